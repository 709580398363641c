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
_SAMPLER_PREFIX = "KSampler"  # KSampler, KSamplerAdvanced: the nodes whose steps are the job's


@dataclass(frozen=True, slots=True)
class Follow:
    """What the listener remembers about one job while its backend runs it.

    A job's steps are those of all its samplers that feed the save node, one after the
    other (a second, upscaling pass adds its steps to the first's): `planned` holds each
    sampler's step count as its graph sets it and the samplers it takes its input from,
    `done` the steps of the samplers that ended.
    """

    job_id: JobId
    user_id: UserId
    save_node: str | None
    planned: tuple[Planned, ...] = ()
    running: bool = False
    sampler: str | None = None  # the sampler stepping now
    sampler_steps: int = 0  # its step count, as its progress says
    done: int = 0
    ended: frozenset[str] = frozenset()  # samplers that ended or were cached
    images: tuple[OutputImage, ...] = ()
    error: tuple[str, str] | None = None  # (code, message) once execution_error was seen
    interrupted: bool = False

    def step(self, node: str | None, value: int, maximum: int) -> tuple[Follow, Stepped | None]:
        """The job's step when `node` reports `value` of `maximum`; None for a node that is
        not one of its samplers (another node's progress bar, a VAE decode's)."""
        plan = {p.node: p for p in self.planned}
        if node is not None and plan and node not in plan:
            return self, None
        sampler, done, ended = self.sampler, self.done, self.ended
        if node is not None and node != sampler:  # the sampler before it has ended
            if sampler is not None:
                done, ended = done + self.sampler_steps, ended | {sampler}
            if node in plan:  # and so have those it takes its input from (followed late?)
                missed = plan[node].after - ended
                done += sum(plan[s].steps for s in missed)
                ended |= missed
            sampler = node
        later = sum(p.steps for p in self.planned if p.node not in ended and p.node != sampler)
        state = replace(self, sampler=sampler, sampler_steps=maximum, done=done, ended=ended)
        return state, Stepped(done + value, done + maximum + later)


@dataclass(frozen=True, slots=True)
class Planned:
    """A sampler of the job: the steps its inputs set (0 when a link sets them: its progress
    tells), and the samplers it takes its input from, directly or not."""

    node: str
    steps: int
    after: frozenset[str]


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
    """Start following `job`, finding its save node and the samplers that feed it."""
    save_node = _node_of(job.graph, lambda cls: cls in _SAVE_CLASSES)
    return Follow(
        job_id=job.id,
        user_id=job.user_id,
        save_node=save_node,
        planned=_samplers_feeding(job.graph, save_node),
    )


def apply(state: Follow, message: m.Message) -> tuple[Follow, list[Change]]:
    """The job's new state and the changes one message of this job asks for."""
    match message:
        case m.ExecutionStart():
            return replace(state, running=True), [Started()]
        case m.Progress(node=node, value=value, max=maximum):
            state, stepped = state.step(node, int(value), int(maximum))
            return state, [] if stepped is None else [stepped]
        case m.ExecutionCached(nodes=nodes):  # a cached sampler runs no steps
            return replace(state, ended=state.ended | frozenset(nodes)), []
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


def _samplers_feeding(graph: Mapping[str, Any], save_node: str | None) -> tuple[Planned, ...]:
    """The samplers the save node depends on (all of them without one): ComfyUI runs only
    what an output needs."""
    needed = set(graph) if save_node is None else _upstream(graph, save_node)
    samplers = {
        str(node_id): node
        for node_id, node in graph.items()
        if str(node_id) in needed
        and isinstance(node, Mapping)
        and str(node.get("class_type", "")).startswith(_SAMPLER_PREFIX)
    }
    return tuple(
        Planned(
            node_id,
            _planned_steps(node.get("inputs", {})),
            frozenset(_upstream(graph, node_id) & samplers.keys() - {node_id}),
        )
        for node_id, node in samplers.items()
    )


def _upstream(graph: Mapping[str, Any], node_id: str) -> set[str]:
    """`node_id` and every node it takes an input from, directly or not."""
    seen, todo = set(), [node_id]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        node = graph.get(current)
        inputs = node.get("inputs", {}) if isinstance(node, Mapping) else {}
        for value in inputs.values() if isinstance(inputs, Mapping) else ():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                todo.append(value[0])  # a link: [source node, output index]
    return seen


def _planned_steps(inputs: Mapping[str, Any]) -> int:
    """The steps a sampler's inputs make it run; 0 when a link sets them (its progress will
    tell). KSamplerAdvanced runs from `start_at_step` to `end_at_step` of `steps`."""
    steps = inputs.get("steps")
    if not isinstance(steps, int):
        return 0
    start, end = inputs.get("start_at_step", 0), inputs.get("end_at_step", steps)
    if not (isinstance(start, int) and isinstance(end, int)):
        return steps
    return max(0, min(end, steps) - start)
