"""Assemble the schema: types, scalars, limits, caches and the error policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import ASTValidationRule, GraphQLError, NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES
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


def _extensions(options: SchemaOptions) -> list[Any]:
    # Rule classes are made once: the validation cache keys on them, so a new class per
    # request (what passing the limiter extensions themselves would do) never hits.
    rules = _rules(options)
    return [
        ErrorCodes,
        lambda: MaxTokensLimiter(max_token_count=options.max_tokens),
        lambda: AddValidationRules(rules),
        lambda: ParserCache(maxsize=CACHE_SIZE),
        lambda: ValidationCache(maxsize=CACHE_SIZE),
    ]


def build_schema(options: SchemaOptions | None = None) -> strawberry.Schema:
    """The StarGraph schema; extensions are factories, so each operation gets fresh ones."""
    options = options or SchemaOptions()
    return StarGraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=list(EVENT_TYPES),
        extensions=_extensions(options),
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        execution_context_class=StreamExecutor,
    )


def sdl() -> str:
    """The schema in SDL, as committed in `schema.graphql` and printed by `stargraph schema`."""
    return build_schema().as_str() + "\n"
