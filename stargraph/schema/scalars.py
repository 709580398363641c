"""Custom scalars. `DateTime` is Strawberry's own (ISO 8601); `SafeInt` is defined here and
registered through the schema's `scalar_map` (see build.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

MAX_SAFE_INT = 2**53 - 1

SafeInt = NewType("SafeInt", int)


def _parse_safe_int(value: object) -> int:
    # bool is an int in Python, but `true` is not a number in JSON.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("SafeInt must be a whole number")
    if not 0 <= value <= MAX_SAFE_INT:
        raise ValueError(f"SafeInt must be between 0 and {MAX_SAFE_INT}")
    return value


SAFE_INT = strawberry.scalar(
    name="SafeInt",
    description="A whole number from 0 to 2^53-1, exact in JSON and JavaScript (seeds).",
    serialize=int,
    parse_value=_parse_safe_int,
)

SCALAR_MAP: Mapping[object, ScalarDefinition] = {SafeInt: SAFE_INT}
