"""The one error tree of StarGraph. The domain raises these; the GraphQL layer maps `code`.

    StarGraphError
    ├── Unauthenticated          UNAUTHENTICATED
    ├── Forbidden                FORBIDDEN
    ├── NotFound                 NOT_FOUND
    ├── BadUserInput             BAD_USER_INPUT  (+ field)
    ├── InsufficientPoints       INSUFFICIENT_POINTS
    ├── RateLimited              RATE_LIMITED
    ├── QueueFull                QUEUE_FULL
    ├── TranslationUnavailable   TRANSLATION_UNAVAILABLE
    └── Conflict                 CONFLICT

Messages are safe to show to the caller.
"""

from __future__ import annotations


class StarGraphError(Exception):
    """Base of every expected failure; `code` is stable and becomes `extensions.code`."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def extensions(self) -> dict[str, object]:
        return {"code": self.code}


class Unauthenticated(StarGraphError):
    code = "UNAUTHENTICATED"


class Forbidden(StarGraphError):
    code = "FORBIDDEN"


class NotFound(StarGraphError):
    code = "NOT_FOUND"


class BadUserInput(StarGraphError):
    code = "BAD_USER_INPUT"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def extensions(self) -> dict[str, object]:
        ext = super().extensions()
        if self.field is not None:
            ext["field"] = self.field
        return ext


class InsufficientPoints(StarGraphError):
    code = "INSUFFICIENT_POINTS"


class RateLimited(StarGraphError):
    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueueFull(StarGraphError):
    code = "QUEUE_FULL"


class TranslationUnavailable(StarGraphError):
    code = "TRANSLATION_UNAVAILABLE"


class Conflict(StarGraphError):
    code = "CONFLICT"
