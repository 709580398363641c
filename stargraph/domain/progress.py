"""What a ComfyUI message means for the job it concerns: pure decisions, no I/O.

The listener keeps one `Follow` per job its backend runs, feeds it every message of that
job through `apply`, and carries out the returned changes. `outcome_of_history` reads a
history entry the same way, for reconciliation after lost messages.

Order facts from the recordings (protocol.md §2.5, §3): `execution_success` arrives before
the history entry is written, so the job ends on `executing` with `node: null`; errors and
interrupts end it too (FAILED / CANCELLED), and `executed` may repeat for cached output
nodes, so the images are those of the save node's last `executed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from stargraph.comfy import messages as m
from stargraph.domain.backends import HistoryRecord, OutputImage
from stargraph.domain.jobs import Job
from stargraph.domain.types import JobId, UserId

RUNTIME_ERROR = "COMFY_RUNTIME"
MAX_ERROR_MESSAGE = 2000
_SAVE_CLASSES = frozenset({"SaveImage"})


@dataclass(frozen=True, slots=True)
class Follow:
    """What the listener remembers about one job while its backend runs it."""

    job_id: JobId
    user_id: UserId
    sampler_node: str | None
    save_node: str | None
    images: tuple[OutputImage, ...] = ()
    running: bool = False
    error: tuple[str, str] | None = None  # (code, message) once execution_error was seen
    interrupted: bool = False


# The changes `apply` asks for -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    """DISPATCHED → RUNNING."""


@dataclass(frozen=True, slots=True)
class Stepped:
    step: int
    max_steps: int


@dataclass(frozen=True, slots=True)
class Previewed:
    image: bytes
    mime_type: str


@dataclass(frozen=True, slots=True)
class Succeeded:
    """The prompt ended well; `images` were seen in `executed` (empty: ask the history)."""

    images: tuple[OutputImage, ...]


@dataclass(frozen=True, slots=True)
class Failed:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The prompt was interrupted (a cancel, or the timeout watch)."""


Change = Started | Stepped | Previewed | Succeeded | Failed | Interrupted
Outcome = Succeeded | Failed | Interrupted


def follow(job: Job) -> Follow:
    """Start following `job`, finding its sampler and save nodes in its graph."""
    return Follow(
        job_id=job.id,
        user_id=job.user_id,
        sampler_node=_node_of(job.graph, lambda cls: cls.startswith("KSampler")),
        save_node=_node_of(job.graph, lambda cls: cls in _SAVE_CLASSES),
    )


def apply(state: Follow, message: m.Message) -> tuple[Follow, list[Change]]:
    """The job's new state and the changes one message of this job asks for."""
    match message:
        case m.ExecutionStart():
            return replace(state, running=True), [Started()]
        case m.Progress(node=node, value=value, max=maximum):
            if state.sampler_node is not None and node not in (None, state.sampler_node):
                return state, []
            return state, [Stepped(step=int(value), max_steps=int(maximum))]
        case m.PreviewImage() | m.PreviewImageWithMetadata():
            return state, [Previewed(message.image, message.mime_type)]
        case m.Executed(node=node, images=images):
            if state.save_node is not None and node != state.save_node:
                return state, []
            seen = tuple(OutputImage(i.filename, i.subfolder, i.type) for i in images)
            return replace(state, images=seen), []
        case m.ExecutionError():
            return replace(state, error=(RUNTIME_ERROR, error_message(message))), []
        case m.ExecutionInterrupted():
            return replace(state, interrupted=True), []
        case m.Executing(node=None):
            return state, [_ending(state)]
        case _:
            return state, []


def _ending(state: Follow) -> Outcome:
    if state.error is not None:
        return Failed(*state.error)
    if state.interrupted:
        return Interrupted()
    return Succeeded(state.images)


def error_message(error: m.ExecutionError) -> str:
    """A short, safe message: the exception's type and text, never its inputs or traceback."""
    return error.summary[:MAX_ERROR_MESSAGE]


def outcome_of_history(state: Follow, record: HistoryRecord) -> Outcome | None:
    """The ending a history entry records; None when it records none (yet)."""
    if record.error is not None:
        return Failed(RUNTIME_ERROR, record.error[:MAX_ERROR_MESSAGE])
    if record.interrupted:
        return Interrupted()
    if not record.succeeded:
        return None
    if state.save_node is not None:
        return Succeeded(record.images.get(state.save_node, ()))
    return Succeeded(tuple(i for node in sorted(record.images) for i in record.images[node]))


def _node_of(graph: Mapping[str, Any], wanted: Any) -> str | None:
    for node_id, node in graph.items():
        if isinstance(node, Mapping) and wanted(str(node.get("class_type", ""))):
            return str(node_id)
    return None
