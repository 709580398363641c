"""The one place errors become `extensions.code`; anything unexpected is masked and logged.

StarGraphError (domain)           → its own code (+ `field` for BAD_USER_INPUT)
depth / alias / token limits      → QUERY_TOO_COMPLEX
other syntax errors               → GRAPHQL_PARSE_FAILED
other validation errors           → GRAPHQL_VALIDATION_FAILED
variable values of the wrong type → BAD_USER_INPUT (+ `field` when it names one)
anything else                     → INTERNAL_SERVER_ERROR, message masked, logged with
                                    the request id (also sent as `extensions.requestId`)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import SchemaExtension

from stargraph.domain.errors import StarGraphError

log = logging.getLogger("stargraph.api")

QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
BAD_USER_INPUT = "BAD_USER_INPUT"
INTERNAL = "INTERNAL_SERVER_ERROR"
MASKED_MESSAGE = "Internal server error; quote the request id when reporting it."

_LIMIT_MESSAGES = re.compile(
    r"exceeds maximum operation depth|aliases found\. Allowed|contains more than \d+ tokens"
)
_FIELD_AT = re.compile(r"^Variable '\$\w+' has invalid value at [^:]*?\.?(\w+)(?:\[\d+\])*:")
_FIELD_NAMED = re.compile(r"^Variable '\$\w+' has invalid value: .*? field '(\w+)'")


def _variable_field(message: str) -> str | None:
    """The input field a variable-coercion message is about, when it names one."""
    match = _FIELD_AT.match(message) or _FIELD_NAMED.match(message)
    return match.group(1) if match else None


@runtime_checkable
class _WithErrors(Protocol):
    """Any result that carries errors: GraphQL's, Strawberry's, or one streamed frame."""

    errors: list[GraphQLError] | None


class ErrorCodes(SchemaExtension):
    """Pass as a class: `extensions=[ErrorCodes]` (a fresh instance per operation)."""

    def __init__(self) -> None:
        self._streamed = False
        self._validation_errors: set[int] = set()

    def on_validate(self) -> Iterator[None]:
        yield
        self._validation_errors = {id(e) for e in self.execution_context.pre_execution_errors or []}

    def on_operation(self) -> Iterator[None]:
        try:
            yield
        except GraphQLError as error:
            # A parse error raised by the parser cache escapes before any result exists;
            # Strawberry turns this very error object into the result.
            self._coded(error)
            raise
        if not self._streamed:
            self._process(self.execution_context.result)

    def on_stream_result(self, result: object) -> Iterator[None]:
        self._streamed = True
        self._process(result)
        yield

    def _process(self, result: object) -> None:
        # Errors first: a runtime protocol check costs more than the rest of this per event.
        errors = getattr(result, "errors", None)
        if errors and isinstance(result, _WithErrors):
            result.errors = [self._coded(e) for e in errors]

    def _coded(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, StarGraphError):
            error.extensions = {**(error.extensions or {}), **original.extensions()}
            return error
        code = self._request_error_code(error)
        if code is None:
            return self._masked(error)
        extensions: dict[str, object] = {"code": code}
        if code == BAD_USER_INPUT and (field := _variable_field(error.message)):
            extensions["field"] = field
        error.extensions = {**(error.extensions or {}), **extensions}
        return error

    def _request_error_code(self, error: GraphQLError) -> str | None:
        """The code of an error in the request itself, None for a failure while running it."""
        if _LIMIT_MESSAGES.search(error.message):
            return QUERY_TOO_COMPLEX
        if isinstance(error, GraphQLSyntaxError):
            return PARSE_FAILED
        if id(error) in self._validation_errors:
            return VALIDATION_FAILED
        if error.path is None and error.message.startswith("Variable '$"):
            return BAD_USER_INPUT
        return None

    def _masked(self, error: GraphQLError) -> GraphQLError:
        request_id = getattr(self.execution_context.context, "request_id", "-")
        cause = error.original_error or error
        log.error(
            "unexpected error at %s (request %s): %s",
            ".".join(map(str, error.path or [])) or "-",
            request_id,
            error.message,
            exc_info=(type(cause), cause, cause.__traceback__),
        )
        return GraphQLError(
            MASKED_MESSAGE,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": INTERNAL, "requestId": request_id},
        )
