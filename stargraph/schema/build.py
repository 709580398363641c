"""Assemble the schema: types, scalars, limits, caches and the error policy."""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    NoSchemaIntrospectionCustomRule,
    parse,
    specified_rules,
)
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES, validate_document
from strawberry.types.execution import ExecutionContext
from strawberry.types.graphql import OperationType

from stargraph.schema.errors import ErrorCodes
from stargraph.schema.events import EVENT_TYPES
from stargraph.schema.execution import StreamExecutor
from stargraph.schema.mutations import Mutation
from stargraph.schema.queries import Query
from stargraph.schema.scalars import SCALAR_MAP
from stargraph.schema.subscriptions import Subscription

CACHE_SIZE = 512


@dataclass(frozen=True, slots=True)
class SchemaOptions:
    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2000
    introspection: bool = True


class StarGraphSchema(strawberry.Schema):
    caches: RequestCaches  # set by build_schema

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        """HTTP runs queries and mutations; subscriptions need a WebSocket (a 400 otherwise)."""
        allowed = kwargs.get("allowed_operation_types") or DEFAULT_ALLOWED_OPERATION_TYPES
        kwargs["allowed_operation_types"] = allowed - {OperationType.SUBSCRIPTION}
        return await super().execute(*args, **kwargs)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Strawberry would log every error, expected ones too; `ErrorCodes` logs the
        unexpected ones, with their request id."""


def _rules(options: SchemaOptions) -> list[type[ASTValidationRule]]:
    rules: list[type[ASTValidationRule]] = [
        depth_rule(options.max_depth, None, None),
        alias_rule(options.max_aliases),
    ]
    if not options.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return rules


class RequestPipeline(ErrorCodes):
    """The token limit, the depth and alias rules, the parser and validation caches and the
    error codes, as one extension: Strawberry builds each extension and its hooks anew for
    every operation, which cost more than the work the five separate ones did.

    Caches are per schema and bounded. Parse errors (the token limit among them) and
    unparsable documents are not cached; validation errors are, as Strawberry's cache does."""

    def __init__(self, caches: RequestCaches) -> None:
        super().__init__()
        self._caches = caches

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = self._caches.max_tokens
        context.validation_rules = self._caches.rules
        yield from super().on_operation()

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is None and context.query:
            context.graphql_document = self._caches.parse(context.query, **context.parse_options)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None
        context.pre_execution_errors = self._caches.validate(
            context.schema._schema, context.graphql_document
        )
        yield from super().on_validate()


class RequestCaches:
    """What every operation of one schema shares: limits, rules and the two caches."""

    def __init__(self, options: SchemaOptions) -> None:
        self.max_tokens = options.max_tokens
        self.rules = (*specified_rules, *_rules(options))
        self.parse = functools.lru_cache(maxsize=CACHE_SIZE)(parse)
        self.validate = ValidationCache(self.rules, CACHE_SIZE)


class ValidationCache:
    """Validation errors per document, for one schema and one set of rules.

    Keyed on the document's identity, not its value: the parser cache hands out the same
    document for the same text, and hashing a document walks its whole tree (4 µs for the
    submit mutation, on every request; a hit here costs 0.2 µs). An entry keeps its
    document alive, so its id cannot be reused while it is cached."""

    def __init__(self, rules: tuple[type[ASTValidationRule], ...], size: int) -> None:
        self._rules = rules
        self._size = size
        self._entries: OrderedDict[int, tuple[DocumentNode, list[GraphQLError]]] = OrderedDict()
        self.hits = 0

    def __call__(self, schema: GraphQLSchema, document: DocumentNode) -> list[GraphQLError]:
        """The document's validation errors (none: an empty list)."""
        key = id(document)
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return entry[1]
        errors = validate_document(schema, document, self._rules)
        self._entries[key] = (document, errors)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return errors


def build_schema(options: SchemaOptions | None = None) -> StarGraphSchema:
    """The StarGraph schema; extensions are factories, so each operation gets fresh ones."""
    options = options or SchemaOptions()
    caches = RequestCaches(options)
    schema = StarGraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=list(EVENT_TYPES),
        extensions=[functools.partial(RequestPipeline, caches)],
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        execution_context_class=StreamExecutor,
    )
    schema.caches = caches
    return schema


def sdl() -> str:
    """The schema in SDL, as committed in `schema.graphql` and printed by `stargraph schema`."""
    return build_schema().as_str() + "\n"
