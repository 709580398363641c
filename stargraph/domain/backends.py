"""The ComfyUI backends as one worker process sees them, and the ports that reach them.

`BackendPool` keeps, per backend: health (socket up, not backing off), a hint of the
in-flight count, the last error, the last checkpoint it ran and measured run times. The
hint comes from the shared `SlotBook` (Redis), which is the arbiter between processes:
a slot is reserved atomically there before a job is sent, so `max_inflight` holds across
any number of dispatcher processes. The pool's `changed` signal wakes the dispatcher
when a slot is freed (here or, through the SlotBook, in another process) or a backend
comes back.

A backend that is full gets one job more, prepared on standby: claimed, its slot reserved
one over `max_inflight`, and marked DISPATCHED while the running job's last steps run
(`near_end`). Its POST waits in `wait_for_room` for the moment a job leaves the backend,
so a freed slot costs no Redis script and no UPDATE before the next POST.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from stargraph.domain.capabilities import Capabilities
from stargraph.domain.types import BackendId, JobId

_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 30.0
_RUN_TIME_WEIGHT = 0.2  # exponential moving average of measured run times
REFILL_FIRST_S = 0.05  # the longest an ending waits for its freed slot's refill


class BackendRejected(Exception):
    """The backend refused the job as invalid (HTTP 400); retrying cannot help."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BackendUnreachable(Exception):
    """The request surely did not reach the backend (connection refused, DNS, ...)."""


class BackendUncertain(Exception):
    """The request may have reached the backend (timeout after sending, 5xx): the job is
    left to reconciliation, which looks at the backend's queue and history."""


@dataclass(frozen=True, slots=True)
class OutputImage:
    """A file a backend wrote, as `executed` and `/history` name it (for `/view`)."""

    filename: str
    subfolder: str = ""
    type: str = "output"


@dataclass(frozen=True, slots=True)
class EngineQueue:
    """The prompt ids a backend is running and holding in its own queue."""

    running: frozenset[JobId]
    pending: frozenset[JobId]

    def holds(self, job_id: JobId) -> bool:
        return job_id in self.running or job_id in self.pending


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """How a backend's history (`/history/{id}`) says a prompt ended."""

    succeeded: bool
    images: Mapping[str, tuple[OutputImage, ...]]  # output node id → its files
    error: str | None = None  # a short summary of the runtime error, if one ended it
    interrupted: bool = False


class EngineGateway(Protocol):
    """Every call the engine makes to a backend over HTTP (ComfyUI in production)."""

    async def post(
        self, backend: BackendId, job_id: JobId, graph: dict[str, Any], client_id: str
    ) -> None:
        """Queue `graph` under prompt id `job_id`; raises BackendRejected, BackendUnreachable
        or BackendUncertain."""
        ...

    async def queue(self, backend: BackendId) -> EngineQueue: ...

    async def history(self, backend: BackendId, job_id: JobId) -> HistoryRecord | None:
        """The job's history entry; None when the backend has none (yet, or any more)."""
        ...

    async def fetch(self, backend: BackendId, image: OutputImage) -> bytes: ...

    async def capabilities(self, backend: BackendId) -> Capabilities:
        """Checkpoints, samplers and schedulers the backend offers (`/object_info`)."""
        ...

    async def forget(self, backend: BackendId, job_id: JobId) -> None:
        """Delete the job's history entry."""
        ...

    async def interrupt(self, backend: BackendId, job_id: JobId) -> None:
        """Stop the job if it is the one running (no-op otherwise)."""
        ...

    async def delete_pending(self, backend: BackendId, job_id: JobId) -> None:
        """Drop the job from the backend's queue if it waits there (no-op otherwise)."""
        ...


class SlotCount(NamedTuple):
    """A backend's in-flight count as Redis saw it, and when: `version` grows with every slot
    operation in the order Redis ran them, so an answer that arrives late cannot overwrite a
    newer one (a release's answer landing after the next reservation's, say)."""

    inflight: int
    version: int


class SlotBook(Protocol):
    """In-flight slots per backend, shared by every worker process.

    A slot belongs to one job id, so every operation is idempotent per job.
    """

    async def reserve(
        self, backend: BackendId, job_id: JobId, limit: int, ttl_s: float
    ) -> tuple[bool, SlotCount]:
        """Take a slot for the job if fewer than `limit` are taken; a reservation that is not
        confirmed within `ttl_s` lapses (its dispatcher died). Returns whether the job holds
        a slot now, and the backend's in-flight count."""
        ...

    async def confirm(self, backend: BackendId, job_id: JobId) -> None:
        """The backend holds the job now: keep the slot until it is released."""
        ...

    async def release(self, backend: BackendId, job_id: JobId) -> SlotCount:
        """Free the job's slot (no-op if it holds none) and tell every process; returns the
        backend's in-flight count after it."""
        ...

    async def counts(self, backends: Sequence[BackendId]) -> dict[BackendId, SlotCount]: ...

    async def held(self, backends: Sequence[BackendId]) -> dict[BackendId, list[JobId]]:
        """Per backend, the jobs holding a confirmed slot (not those merely reserved)."""
        ...

    async def withdraw(self, job_id: JobId) -> None:
        """Tell every process that the job was cancelled before it reached its backend, so
        that whichever holds it on standby does not send it."""
        ...

    def releases(self) -> AsyncIterator[tuple[BackendId, SlotCount] | Withdrawn]:
        """(backend, in-flight count) after each release by any process, and each
        `withdraw`."""
        ...


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """A job cancelled before it reached its backend: a standby holding it is not sent."""

    job_id: JobId


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """One backend as the admin `backends` query and the queue ETA see it."""

    url: BackendId
    healthy: bool
    inflight: int
    max_inflight: int
    last_error: str | None
    last_checkpoint: str | None
    mean_run_s: float | None  # measured engine time per job; None before the first one


@dataclass(slots=True)
class _State:
    connected: bool = False
    backoff_until: float = 0.0
    backoff_s: float = 0.0
    inflight: int = 0
    version: int = 0  # of the newest SlotCount applied
    last_error: str | None = None
    last_checkpoint: str | None = None
    mean_run_s: float | None = None
    freed_at: float | None = None  # when a full backend last got a slot back
    standby_wanted: bool = False  # the running job ends soon: prepare the next one
    room: asyncio.Event = field(default_factory=asyncio.Event, repr=False)  # inflight ≤ max
    wakeup: asyncio.TimerHandle | None = field(default=None, repr=False)


class BackendPool:
    def __init__(
        self,
        backends: Iterable[BackendId],
        max_inflight: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_inflight = max_inflight
        self._states = {BackendId(b): _State() for b in backends}
        self._clock = clock
        self._changed = asyncio.Event()
        self._refills = asyncio.Event()  # set (then replaced) whenever a refill settles
        self._standbys: dict[JobId, BackendId] = {}  # waiting in `wait_for_room`
        self._withdrawn: set[JobId] = set()  # of those, the ones cancelled meanwhile

    @property
    def backends(self) -> tuple[BackendId, ...]:
        return tuple(self._states)

    def is_healthy(self, backend: BackendId) -> bool:
        state = self._states[backend]
        return state.connected and self._clock() >= state.backoff_until

    def mark_up(self, backend: BackendId) -> None:
        """The backend's socket is connected (again): it may receive jobs."""
        state = self._states[backend]
        state.connected = True
        state.backoff_until = 0.0
        state.backoff_s = 0.0
        self.signal()

    def mark_down(self, backend: BackendId, error: str) -> None:
        """The socket is down: no new jobs until `mark_up`."""
        state = self._states[backend]
        state.connected = False
        state.last_error = error
        state.room.set()  # a job on standby there goes back to the queue

    def back_off(self, backend: BackendId, error: str) -> float:
        """A send failed: keep new jobs away for a growing delay; returns the delay."""
        state = self._states[backend]
        state.last_error = error
        state.backoff_s = min(_BACKOFF_MAX_S, max(_BACKOFF_FIRST_S, state.backoff_s * 2))
        state.backoff_until = self._clock() + state.backoff_s
        state.room.set()  # a job on standby there goes back to the queue
        if state.wakeup is not None:
            state.wakeup.cancel()
        # a timer that only wakes the dispatcher when the back-off ends; nothing polls
        state.wakeup = asyncio.get_running_loop().call_later(state.backoff_s, self.signal)
        return state.backoff_s

    def note_error(self, backend: BackendId, error: str) -> None:
        self._states[backend].last_error = error

    def set_inflight(self, backend: BackendId, seen: SlotCount) -> None:
        """Record the shared in-flight count (a hint; the SlotBook decides). A count older than
        one already applied is ignored."""
        state = self._states.get(backend)
        if state is None or seen.version <= state.version:
            return
        state.version = seen.version
        self._count(state, seen.inflight)

    def _count(self, state: _State, count: int) -> None:
        freed = count < state.inflight
        if freed and state.inflight >= self.max_inflight:
            state.freed_at = self._clock()
        state.inflight = max(0, count)
        if state.inflight <= self.max_inflight:
            state.room.set()
        else:
            state.room.clear()
        if freed or count < self.max_inflight:
            self.signal()

    def note_left(self, backend: BackendId) -> None:
        """A job left the backend: one slot fewer in use, as a hint until the SlotBook's
        count comes back. The dispatcher may claim meanwhile; its reservation decides."""
        state = self._states.get(backend)
        if state is not None and state.inflight > 0:
            self._count(state, state.inflight - 1)

    def take_refill_gap(self, backend: BackendId) -> float | None:
        """Seconds since a full backend got a slot back, once per freed slot (for the
        slot-free → next-POST metric); None when the backend was not waiting to be refilled."""
        state = self._states.get(backend)
        if state is None or state.freed_at is None:
            return None
        gap, state.freed_at = self._clock() - state.freed_at, None
        self._refill_settled()
        return gap

    def nothing_to_refill(self) -> None:
        """The queue is empty: no freed slot waits for a job any more (nor a gap to measure)."""
        for state in self._states.values():
            state.freed_at = None
        self._refill_settled()

    async def refills_first(self, within_s: float = REFILL_FIRST_S) -> None:
        """Wait, at most `within_s`, while a slot freed on a healthy backend waits for its
        next job.

        Endings (downloads, storage, settlement) share the event loop, the connections, the
        database and the backends with refills; an ending waits before it starts and between
        its steps, which keeps it off every slot-free → next-POST path."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                while self._awaiting_refill():
                    await self._refills.wait()

    def _awaiting_refill(self) -> bool:
        return any(
            state.freed_at is not None and self.is_healthy(backend)
            for backend, state in self._states.items()
        )

    def _refill_settled(self) -> None:
        self._refills.set()
        self._refills = asyncio.Event()

    def note_checkpoint(self, backend: BackendId, checkpoint: str) -> None:
        self._states[backend].last_checkpoint = checkpoint

    def last_checkpoint(self, backend: BackendId) -> str | None:
        """The checkpoint of the last job sent to `backend` (likely still loaded there)."""
        state = self._states.get(backend)
        return None if state is None else state.last_checkpoint

    def note_run_time(self, backend: BackendId, seconds: float) -> None:
        state = self._states[backend]
        if state.mean_run_s is None:
            state.mean_run_s = seconds
        else:
            state.mean_run_s += _RUN_TIME_WEIGHT * (seconds - state.mean_run_s)

    def has_free_slot(self) -> bool:
        return any(self._is_free(b) for b in self._states)

    def near_end(self, backend: BackendId) -> None:
        """The job running on `backend` is about to end: if the backend is full, ask the
        dispatcher to prepare its next job on standby."""
        state = self._states.get(backend)
        if state is not None and not state.standby_wanted and self._wants_standby(backend):
            state.standby_wanted = True
            self.signal()

    def take_standby_request(self) -> BackendId | None:
        """A backend whose next job should be prepared now (each request is taken once)."""
        for backend, state in self._states.items():
            if state.standby_wanted:
                state.standby_wanted = False
                if self._wants_standby(backend):
                    return backend
        return None

    def _wants_standby(self, backend: BackendId) -> bool:
        # exactly full: over it, a job is on standby there already (in this process or not)
        return self.is_healthy(backend) and self._states[backend].inflight == self.max_inflight

    async def wait_for_room(
        self, backend: BackendId, job_id: JobId, within_s: float, stop: asyncio.Event
    ) -> bool:
        """Wait, at most `within_s`, until the backend holds fewer than `max_inflight` jobs
        besides the caller's standby `job_id` (whose reserved slot the count includes). False
        if it went unhealthy, the time ran out, the job was withdrawn (`withdraw`) or `stop`
        was set (whoever sets it calls `wake_standbys`). Resumes one loop turn after the job
        leaves."""
        state = self._states[backend]
        self._standbys[job_id] = backend
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within_s):
                    while self._holds_standby(backend) and not self._ends_wait(job_id, stop):
                        state.room.clear()
                        await state.room.wait()
            return not self._ends_wait(job_id, stop) and not self._holds_standby(backend)
        finally:
            del self._standbys[job_id]
            self._withdrawn.discard(job_id)

    def _ends_wait(self, job_id: JobId, stop: asyncio.Event) -> bool:
        backend = self._standbys[job_id]
        return stop.is_set() or job_id in self._withdrawn or not self.is_healthy(backend)

    def withdraw(self, job_id: JobId) -> None:
        """The job was cancelled: if it waits here on standby, its wait ends and it is not
        sent. (Ids of jobs not waiting here are not kept.)"""
        backend = self._standbys.get(job_id)
        if backend is not None:
            self._withdrawn.add(job_id)
            self._states[backend].room.set()

    def _holds_standby(self, backend: BackendId) -> bool:
        return self._states[backend].inflight > self.max_inflight and self.is_healthy(backend)

    def wake_standbys(self) -> None:
        """Wake every `wait_for_room` (to see its stop)."""
        for state in self._states.values():
            state.room.set()

    def candidates(self, checkpoint: str | None) -> list[BackendId]:
        """Healthy backends with a free slot: those that last ran `checkpoint` first, then
        the least loaded."""
        free = [b for b in self._states if self._is_free(b)]
        return sorted(
            free,
            key=lambda b: (
                self._states[b].last_checkpoint != checkpoint,
                self._states[b].inflight,
            ),
        )

    def pick(self, checkpoint: str | None) -> BackendId | None:
        """The first of `candidates(checkpoint)`, counted one slot busier at once, so that
        the next pick looks elsewhere before the SlotBook's count comes back."""
        free = self.candidates(checkpoint)
        if not free:
            return None
        self._states[free[0]].inflight += 1
        return free[0]

    def signal(self) -> None:
        """Wake whoever waits for a slot (a slot was freed or a backend came back)."""
        self._changed.set()

    async def wait_for_slot(self, stop: asyncio.Event | None = None) -> None:
        """Return once some healthy backend has a free slot (by the current hints), a
        standby is wanted, or `stop` is set (whoever sets it calls `signal`)."""
        while True:
            self._changed.clear()
            if self.has_free_slot() or (stop is not None and stop.is_set()):
                return
            if any(state.standby_wanted for state in self._states.values()):
                return
            await self._changed.wait()

    def snapshot(self) -> list[BackendStatus]:
        return [
            BackendStatus(
                url=b,
                healthy=self.is_healthy(b),
                inflight=s.inflight,
                max_inflight=self.max_inflight,
                last_error=s.last_error,
                last_checkpoint=s.last_checkpoint,
                mean_run_s=s.mean_run_s,
            )
            for b, s in self._states.items()
        ]

    def _is_free(self, backend: BackendId) -> bool:
        return self.is_healthy(backend) and self._states[backend].inflight < self.max_inflight
