"""Validation of a text-to-image request: the limits of DESIGN.md and what the engines offer.

`SubmitRequest` mirrors the GraphQL `Text2ImageInput`; a field left as None takes the
workflow's default. `validate` turns it into `JobParams` or raises `BadUserInput` whose
`field` is the GraphQL input field name (camelCase).

Text rules: prompts may hold any Unicode text, including tab, line feed and carriage
return, but no other control characters (C0, DEL, C1) and no lone surrogates; the
idempotency key must be 1..128 printable characters. An empty offer in `Capabilities`
(no backend reached and nothing configured) means "not known yet": any reasonably short
name without control characters is accepted, and ComfyUI's own validation has the last word.
"""

from __future__ import annotations

import math
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from stargraph.domain.capabilities import Capabilities
from stargraph.domain.errors import BadUserInput
from stargraph.domain.jobs import JobParams
from stargraph.domain.types import Priority
from stargraph.domain.workflows import WorkflowCatalog

PROMPT_MAX = 2000
COUNT_RANGE = (1, 8)
SIZE_RANGE = (64, 2048)
SIZE_STEP = 8
STEPS_RANGE = (1, 100)
CFG_RANGE = (0.0, 30.0)
SEED_MAX = 2**53 - 1
IDEMPOTENCY_KEY_MAX = 128
NAME_MAX = {"sampler": 64, "scheduler": 64, "model": 255}  # the jobs table's column sizes
DEFAULT_WORKFLOW = "t2i"
_ALLOWED_CONTROLS = frozenset("\t\n\r")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    """What a caller asks for, before validation (None = the workflow's default)."""

    prompt: str
    negative_prompt: str | None = None
    count: int | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    model: str | None = None
    seed: int | None = None  # None or 0: a random seed, reported back on the job
    workflow: str | None = None
    priority: Priority = Priority.NORMAL
    idempotency_key: str | None = None


def validate(
    request: SubmitRequest,
    capabilities: Capabilities,
    catalog: WorkflowCatalog,
    default_model: str | None,
    rng: random.Random,
) -> JobParams:
    """Check every field and apply defaults; BadUserInput(field=...) on the first fault."""
    workflow = catalog.get(request.workflow or DEFAULT_WORKFLOW)
    d = workflow.defaults
    _check_idempotency_key(request.idempotency_key)
    return JobParams(
        prompt=_text(request.prompt, "prompt", required=True),
        negative_prompt=_text(_or(request.negative_prompt, d.negative_prompt), "negativePrompt"),
        count=_int(_or(request.count, d.count), "count", COUNT_RANGE),
        width=_size(_or(request.width, d.width), "width"),
        height=_size(_or(request.height, d.height), "height"),
        steps=_int(_or(request.steps, d.steps), "steps", STEPS_RANGE),
        cfg=_cfg(_or(request.cfg, d.cfg)),
        sampler=_offered(_or(request.sampler, d.sampler), capabilities.samplers, "sampler"),
        scheduler=_offered(
            _or(request.scheduler, d.scheduler), capabilities.schedulers, "scheduler"
        ),
        model=_model(request.model, capabilities.checkpoints, default_model),
        seed=_seed(request.seed, rng),
        workflow=workflow.name,
        priority=_priority(request.priority),
    )


def _or(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def has_forbidden_characters(text: str) -> bool:
    """True for control characters other than tab/LF/CR, and for lone surrogates."""
    if text.isprintable():  # C speed; no printable character is in Cc or Cs
        return False
    return any(
        (unicodedata.category(ch) in ("Cc", "Cs")) and ch not in _ALLOWED_CONTROLS for ch in text
    )


def _text(value: object, field: str, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise BadUserInput(f"{field} must be a string", field=field)
    if required and not value.strip():
        raise BadUserInput(f"{field} must not be empty", field=field)
    if len(value) > PROMPT_MAX:
        raise BadUserInput(f"{field} is longer than {PROMPT_MAX} characters", field=field)
    if has_forbidden_characters(value):
        raise BadUserInput(f"{field} contains control characters", field=field)
    return value


def _int(value: object, field: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadUserInput(f"{field} must be a whole number from {low} to {high}", field=field)
    return value


def _size(value: object, field: str) -> int:
    number = _int(value, field, SIZE_RANGE)
    if number % SIZE_STEP:
        raise BadUserInput(f"{field} must be a multiple of {SIZE_STEP}", field=field)
    return number


def _cfg(value: object) -> float:
    low, high = CFG_RANGE
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise BadUserInput(f"cfg must be a number from {low:g} to {high:g}", field="cfg")
    return float(value)


def _name(value: object, field: str) -> str:
    limit = NAME_MAX[field]
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise BadUserInput(f"{field} must be a name of 1 to {limit} characters", field=field)
    if has_forbidden_characters(value):
        raise BadUserInput(f"{field} contains control characters", field=field)
    return value


def _offered(value: object, offer: Sequence[str], field: str) -> str:
    name = _name(value, field)
    if offer and name not in offer:
        shown = ", ".join(offer[:12]) + (", …" if len(offer) > 12 else "")
        raise BadUserInput(f"{field} {name!r} is not offered; choose one of: {shown}", field=field)
    return name


def _model(value: str | None, checkpoints: Sequence[str], default_model: str | None) -> str:
    """The asked checkpoint, else the configured default if offered, else the first offered."""
    if value is not None:
        return _offered(value, checkpoints, "model")
    if default_model and (not checkpoints or default_model in checkpoints):
        return default_model
    if checkpoints:
        return checkpoints[0]
    raise BadUserInput("no checkpoint is known yet; name the model to use", field="model")


def _seed(value: object, rng: random.Random) -> int:
    if value is None:
        return rng.randint(1, SEED_MAX)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise BadUserInput(f"seed must be a whole number from 0 to {SEED_MAX}", field="seed")
    return value or rng.randint(1, SEED_MAX)


def _priority(value: object) -> Priority:
    if not isinstance(value, Priority):
        raise BadUserInput("priority must be LOW, NORMAL, HIGH or URGENT", field="priority")
    return value


def _check_idempotency_key(key: str | None) -> None:
    if key is None:
        return
    if not isinstance(key, str) or not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX:
        raise BadUserInput(
            f"idempotencyKey must be 1 to {IDEMPOTENCY_KEY_MAX} characters",
            field="idempotencyKey",
        )
    if not key.isprintable():
        raise BadUserInput("idempotencyKey must be printable characters", field="idempotencyKey")
