"""The verdict on one answer to a hostile request: what is wrong with it, and whether the
request was rejected as a whole (so it must have changed nothing)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import graphql
import httpx

INTERNAL = "INTERNAL_SERVER_ERROR"

# Text that must never reach a caller unless the caller sent it first.
LEAKS = {
    "traceback": re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+"),
    "exception class": re.compile(r"\b[A-Z][A-Za-z0-9_]*(?:Error|Exception)\b"),
    "module path": re.compile(
        r"\b(?:asyncpg|aiosqlite|sqlite3|asyncmy|pymysql|tortoise|pypika|redis|fakeredis|"
        r"strawberry|starlette|uvicorn|stargraph|graphql)\.[a-z_]"
    ),
    "SQL": re.compile(
        r"\b(?:SELECT\b.+\bFROM|INSERT INTO|DELETE FROM|UPDATE\b.+\bSET|CREATE TABLE)\b"
        r"|\b(?:syntax error at or near|UNIQUE constraint|violates|duplicate key)\b",
        re.IGNORECASE,
    ),
    "object repr": re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>"),
}


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    changes_nothing: bool = True  # the whole request was refused or only read


@dataclass(frozen=True, slots=True)
class Operation:
    kind: str  # "query" | "mutation" | "subscription" | "invalid"
    root_keys: tuple[str, ...] | None  # in execution order; None when not known


def operation_of(document: str, operation_name: str | None = None) -> Operation:
    """The kind of operation a document runs and the response keys of its root fields."""
    try:
        parsed = graphql.parse(document)
    except graphql.GraphQLError:
        return Operation("invalid", ())
    ops = [d for d in parsed.definitions if isinstance(d, graphql.OperationDefinitionNode)]
    if operation_name is not None:
        ops = [o for o in ops if o.name is not None and o.name.value == operation_name]
    if len(ops) != 1:
        return Operation("invalid", ())
    return Operation(ops[0].operation.value, _root_keys(ops[0].selection_set))


def _root_keys(selection_set: graphql.SelectionSetNode) -> tuple[str, ...] | None:
    keys: list[str] = []
    for selection in selection_set.selections:
        if selection.directives:
            return None  # @skip / @include decide at run time
        if isinstance(selection, graphql.FieldNode):
            keys.append((selection.alias or selection.name).value)
        elif isinstance(selection, graphql.InlineFragmentNode):
            inner = _root_keys(selection.selection_set)
            if inner is None:
                return None
            keys += inner
        else:
            return None
    return tuple(dict.fromkeys(keys))


def judge(sent: str, operation: Operation, response: httpx.Response) -> Verdict:
    """Check one answer. `sent` is the request's text (leaks it contains are echoes)."""
    verdict = Verdict()
    if response.status_code >= 500:
        verdict.problems.append(f"HTTP {response.status_code}: {response.text[:200]}")
    body = _json(response)
    if response.status_code != 200 or body is None:
        _check_text(verdict, sent, response.text)
        return verdict
    errors = body.get("errors") or []
    for error in errors:
        _check_error(verdict, sent, error)
    verdict.changes_nothing = _refused_or_read(operation, errors)
    return verdict


def _json(response: httpx.Response) -> dict[str, Any] | None:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _check_error(verdict: Verdict, sent: str, error: dict[str, Any]) -> None:
    code = (error.get("extensions") or {}).get("code")
    message = str(error.get("message", ""))
    if not isinstance(code, str) or not code:
        verdict.problems.append(f"error without extensions.code: {message[:200]}")
    elif code == INTERNAL:
        verdict.problems.append(f"{INTERNAL} at {error.get('path')}")
    _check_text(verdict, sent, message)


def _check_text(verdict: Verdict, sent: str, text: str) -> None:
    for name, pattern in LEAKS.items():
        found = pattern.search(text)
        if found and not pattern.search(sent):
            verdict.problems.append(f"{name} leaked: {found.group(0)!r} in {text[:200]!r}")


def _refused_or_read(operation: Operation, errors: list[dict[str, Any]]) -> bool:
    """Whether nothing may have changed: a read, a request refused before it ran, or a
    mutation whose first root field failed (root mutation fields are non-null and run in
    order, so execution stops at the first that fails)."""
    if operation.kind in ("query", "invalid"):
        return True
    if any(not error.get("path") for error in errors):
        return True  # parse, validation or variable errors: nothing ran
    if not operation.root_keys:
        return False
    failed = {str(e["path"][0]) for e in errors if len(e["path"]) == 1}
    return operation.root_keys[0] in failed


def signature(problem: str) -> str:
    """A problem without its variable parts, to count each kind once."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", problem)
    return text[:120]
