"""The listener: one ComfyUI socket per backend, turning its messages into job changes.

The reader only decides (pure `progress.apply`) and frees a slot the moment ComfyUI says a
prompt is over, before anything is fetched or written, so the dispatcher can fill it at
once. Writes and events go through one ordered effects queue (a job's progress events
always come before its ending). A job's progress row serves only snapshots: its newest step
goes to the worker's `ProgressRows`, which writes every job's in one statement a tick, so a
slow database delays rows, never the socket or the events. Each ending (download images,
store, settle) runs in a task of its own.

On every (re)connect it reconciles the backend's in-flight jobs (messages were lost); on a
`status` broadcast it re-checks the jobs inside the backend whose messages do not reach it
(posted by a worker that died, or by another process); a housekeeping tick checks the rest:
timeouts, and jobs that stayed quiet for two ticks (an ending may have been lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime

from stargraph.comfy import messages as m
from stargraph.domain.backends import BackendPool, EngineGateway, SlotBook
from stargraph.domain.events import EventBus, JobPreview, JobProgress, JobStarted
from stargraph.domain.jobs import IN_ENGINE, Job, JobStatus, JobStore
from stargraph.domain.progress import (
    Change,
    Failed,
    Follow,
    Interrupted,
    Previewed,
    Started,
    Stepped,
    Succeeded,
    apply,
    follow,
)
from stargraph.domain.types import BackendId, JobId
from stargraph.engine.gateway import EngineSocket
from stargraph.engine.previews import preview_data_url
from stargraph.engine.progress_rows import ProgressRows
from stargraph.engine.reconcile import InEngineTable, Reconciler
from stargraph.engine.results import Finisher

log = logging.getLogger(__name__)

_FORGET_UNKNOWN = 256  # prompt ids not ours, remembered so they cost one lookup only
# How long before the sampler's last step the next job is prepared on standby: more than a
# claim and an UPDATE take under load, little enough that the queue stays reorderable.
_STANDBY_LEAD_S = 0.25


def _now() -> datetime:
    return datetime.now(UTC)


class _Live:
    """One job this listener follows."""

    __slots__ = ("follow", "heard_at", "job", "last_step", "since", "started", "steps_done")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.follow: Follow = follow(job)
        self.since = self.heard_at = time.monotonic()  # followed since; last heard of
        self.started: float | None = None
        self.last_step = 0  # the newest step handed to the effects queue
        self.steps_done = 0  # its step count once the last step is reached (0 before)


def _ends_soon(live: _Live, step: int, max_steps: int) -> bool:
    """Whether the job at `step` of `max_steps` (the steps of all its samplers, one after the
    other) is at its last step but one or, at its pace since it started, within
    `_STANDBY_LEAD_S` of its last sampler's end. The pace is taken over the whole run, not
    between two frames: frames read in one burst (a busy worker) would make any pace look
    instant."""
    left = max_steps - step
    if left <= 1:
        return True
    if live.started is None or step < 2:
        return False  # no pace yet
    per_step = (live.heard_at - live.started) / step
    return left * per_step <= _STANDBY_LEAD_S


class Listener:
    def __init__(
        self,
        *,
        backend: BackendId,
        client_id: str,
        socket: Callable[[], EngineSocket],
        engine: EngineGateway,
        jobs: JobStore,
        events: EventBus,
        finisher: Finisher,
        reconciler: Reconciler,
        table: InEngineTable,
        slots: SlotBook,
        pool: BackendPool,
        progress: ProgressRows,
        on_connect: Callable[[BackendId], Awaitable[None]] | None = None,
        housekeeping_s: float = 5.0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.backend = backend
        self.client_id = client_id
        self._socket = socket
        self._engine = engine
        self._jobs = jobs
        self._events = events
        self._finisher = finisher
        self._reconciler = reconciler
        self._table = table
        self._slots = slots
        self._pool = pool
        self._progress = progress
        self._on_connect = on_connect
        self._housekeeping_s = housekeeping_s
        self._clock = clock
        self._live: dict[JobId, _Live] = {}
        self._ending: set[JobId] = set()
        self._ended: dict[JobId, float] = {}  # endings done lately, and when (monotonic)
        self._foreign: set[JobId] = set()
        self._unknown: dict[str, None] = {}
        self._running: JobId | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._effects: asyncio.Queue[tuple[_Live, Change] | None] = asyncio.Queue()
        self._sock: EngineSocket | None = None
        self._last_tick = time.monotonic()
        self._quiet: set[JobId] = set()  # followed jobs not heard from during the last tick

    def expect(self, job: Job) -> None:
        """The dispatcher sent `job` here: follow it without a lookup."""
        if job.id not in self._live:
            self._live[job.id] = _Live(job)
        self._watch_silence()

    def _watch_silence(self) -> None:
        """The socket's silence detector runs while jobs are believed inside the backend."""
        if self._sock is not None:
            self._sock.set_active(bool(self._live or self._foreign))

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until `stop`; endings under way are completed before returning."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            reader = tasks.create_task(self._read(stop))
            ticker = tasks.create_task(self._tick(stop))
            effects = tasks.create_task(self._carry_out_effects())
            await stop.wait()
            reader.cancel()
            self._effects.put_nowait(None)  # drain what was decided, then stop
            await asyncio.wait({ticker, effects})
        self._pool.mark_down(self.backend, "worker stopped")

    # --- reading -------------------------------------------------------------------------

    async def _read(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            socket = self._socket()
            self._sock = socket
            try:
                async for event in socket:
                    await self._guarded(self.handle(event))
                    # redis-py on Python 3.11 can swallow a cancellation inside a command
                    # (asyncio.wait_for), so the stop event is the reliable signal.
                    if stop.is_set():
                        break
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception:
                log.exception("socket of %s failed; reopening", self.backend)
                self._pool.mark_down(self.backend, "socket failed")
                await asyncio.sleep(1.0)  # a crash of the socket loop itself: no hot retry
            finally:
                self._sock = None
                await socket.aclose()

    async def handle(self, event: m.SocketEvent) -> None:
        """Act on one socket event (public so tests can feed recorded events)."""
        match event:
            case m.Connected():
                await self._connected()
            case m.Disconnected(reason=reason):
                self._pool.mark_down(self.backend, reason)
            case m.Status():
                if self._foreign:
                    self._spawn(self._recheck_foreign())
            case _:
                await self._message(event)

    async def _connected(self) -> None:
        log.info("connected to %s as %s", self.backend, self.client_id)
        self._pool.mark_up(self.backend)
        await self._reconcile(followed=())
        if self._on_connect is not None:
            self._spawn(self._on_connect(self.backend))

    async def _message(self, message: m.Message) -> None:
        job_id = self._job_of(message)
        if job_id is None:
            return
        live = self._live.get(job_id) or await self._lookup(job_id, message)
        if live is None:
            return
        live.heard_at = time.monotonic()
        live.follow, changes = apply(live.follow, message)
        for change in changes:
            if isinstance(change, Started):
                self._running = job_id
                live.started = time.monotonic()
                self._pool.note_checkpoint(self.backend, live.job.params.model)
            elif isinstance(change, Stepped):
                if _ends_soon(live, change.step, change.max_steps):
                    self._pool.near_end(self.backend)
                live.last_step = change.step
            elif isinstance(change, Succeeded | Failed | Interrupted):
                await self._free_slot(live)
            self._effects.put_nowait((live, change))

    def _job_of(self, message: m.Message) -> JobId | None:
        if isinstance(message, m.PreviewImage):
            return self._running  # type-1 previews carry no prompt id
        prompt_id = getattr(message, "prompt_id", None)
        return JobId(prompt_id) if prompt_id else None

    async def _lookup(self, job_id: JobId, message: m.Message) -> _Live | None:
        if job_id in self._unknown or job_id in self._ending:
            return None
        job = await self._jobs.get(job_id)
        if job is not None and job.status in IN_ENGINE and job.backend == self.backend:
            live = self._live[job_id] = _Live(job)
            self._foreign.discard(job_id)
            self._watch_silence()
            return live
        if job is not None and job.is_terminal and isinstance(message, m.ExecutionStart):
            # ended while it waited inside ComfyUI (a cancel that raced the POST): stop it
            self._spawn(self._engine.interrupt(self.backend, job_id))
        self._unknown[job_id] = None
        if len(self._unknown) > _FORGET_UNKNOWN:
            self._unknown.pop(next(iter(self._unknown)))
        return None

    # --- changes -------------------------------------------------------------------------

    async def _carry_out_effects(self) -> None:
        while (item := await self._effects.get()) is not None:
            await self._guarded(self._carry_out(*item))

    async def _carry_out(self, live: _Live, change: Change) -> None:
        job = live.job
        match change:
            case Started():
                # a job starts as the one before it ends, and its UPDATE would share the
                # database with that slot's refill: the refill's POST goes first
                await self._pool.refills_first()
                await self._started(live)
            case Stepped(step=step, max_steps=max_steps):
                await self._stepped(live, step, max_steps)
            case Previewed(image=image):
                data_url = await preview_data_url(image)
                if data_url is None:
                    return
                await self._events.publish(
                    JobPreview(
                        job_id=job.id,
                        user_id=job.user_id,
                        at=self._clock(),
                        status=JobStatus.RUNNING,
                        data_url=data_url,
                    )
                )
            case _:
                self._spawn(self._finish(live, change))

    async def _stepped(self, live: _Live, step: int, max_steps: int) -> None:
        if step == max_steps:  # the ending writes it, once the freed slot is refilled
            live.steps_done = max_steps
        elif step == live.last_step:  # the newest: an older one waiting here is not written
            self._progress.note(live.job.id, step, max_steps)
        await self._events.publish(
            JobProgress(
                job_id=live.job.id,
                user_id=live.job.user_id,
                at=self._clock(),
                status=JobStatus.RUNNING,
                step=step,
                max_steps=max_steps,
            )
        )

    async def _started(self, live: _Live) -> None:
        running = await self._jobs.mark_running(live.job.id, self._clock())
        if running is None:
            current = await self._jobs.get(live.job.id)
            if current is not None and current.is_terminal:
                self._spawn(self._engine.interrupt(self.backend, live.job.id))
            return
        live.job = running
        await self._events.publish(
            JobStarted(
                job_id=running.id, user_id=running.user_id, at=self._clock(), status=running.status
            )
        )

    async def _free_slot(self, live: _Live) -> None:
        """ComfyUI is done with the job: its slot is free now (the ending follows)."""
        job = live.job
        self._live.pop(job.id, None)
        self._progress.forget(job.id)
        if self._running == job.id:
            self._running = None
        if live.started is not None:
            self._pool.note_run_time(self.backend, time.monotonic() - live.started)
        self._ending.add(job.id)
        self._watch_silence()
        self._pool.note_left(self.backend)  # the dispatcher claims while Redis frees the slot
        try:
            count = await self._slots.release(self.backend, job.id)
        except Exception:  # Redis away: the sweeper frees the slot of a job that has ended
            log.exception("could not free the slot of %s", job.id)
            return
        self._pool.set_inflight(self.backend, count)

    async def _finish(self, live: _Live, outcome: Change) -> None:
        job = live.job
        try:
            await self._pool.refills_first()
            if live.steps_done:  # the row of an ended job shows its last step
                await self._progress.write_now(job.id, live.steps_done, live.steps_done)
            await self._finisher.end(job, self.backend, outcome)  # type: ignore[arg-type]
        finally:
            self._ending.discard(job.id)
            self._ended[job.id] = time.monotonic()

    # --- reconciliation ------------------------------------------------------------------

    async def _reconcile(self, followed: Collection[JobId]) -> None:
        """A full pass; `followed` are the jobs whose messages flow (none after a reconnect)."""
        expected = set(self._live)  # followed before the pass began
        report = await self._reconciler.reconcile(skip=self._ending, followed=followed)
        self._foreign = report.foreign - set(self._live)
        gone = (expected - report.in_flight - self._ending) | report.ended | report.requeued
        for job_id in gone:
            self._live.pop(job_id, None)
            self._progress.forget(job_id)
        self._watch_silence()

    async def _recheck_foreign(self) -> None:
        report = await self._reconciler.reconcile(only=set(self._foreign), skip=self._ending)
        self._foreign = report.foreign - set(self._live)
        self._watch_silence()

    def _recently_heard(self) -> set[JobId]:
        """Jobs whose messages flow: their ending will come by message, so a pass leaves them
        alone (but for timeouts). One that stayed quiet for two ticks in a row is checked
        against the backend, however: its ending may have been lost."""
        now = time.monotonic()
        quiet = {job_id for job_id, live in self._live.items() if live.heard_at < self._last_tick}
        suspects, self._quiet, self._last_tick = quiet & self._quiet, quiet, now
        return set(self._live) - suspects

    async def _housekeep(self) -> None:
        """A full pass unless the shared table agrees with what this listener follows: the
        same jobs, every one heard from lately and within its time, none foreign.

        The table may be older than this tick: a job followed since its read may be missing
        from it, and one whose ending was done since may still be in it."""
        followed = self._recently_heard()
        listing = await self._table.of(self.backend)
        ended_since = {job_id for job_id, at in self._ended.items() if at >= listing.read_at}
        listed = listing.jobs.keys()
        unlisted = (live for job_id, live in self._live.items() if job_id not in listed)
        in_order = (
            not self._foreign
            and listed - self._ending - ended_since <= self._live.keys()
            and all(live.since >= listing.read_at for live in unlisted)
            and set(self._live) <= followed
            and not any(self._reconciler.timed_out(job) for job in listing.jobs.values())
        )
        if not in_order:
            await self._reconcile(followed)

    def _forget_old_endings(self) -> None:
        horizon = time.monotonic() - 2 * self._housekeeping_s  # older than any shared read
        self._ended = {job_id: at for job_id, at in self._ended.items() if at >= horizon}

    async def _tick(self, stop: asyncio.Event) -> None:
        # Each listener's ticks start at a random point of the period: a thousand listeners
        # ticking at once would hold the worker's loop for one long turn.
        wait = random.uniform(0.0, self._housekeeping_s)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
            if stop.is_set():
                return
            wait = self._housekeeping_s
            self._forget_old_endings()
            if self._pool.is_healthy(self.backend):
                await self._guarded(self._housekeep())
            else:  # unreachable: its jobs can still run out of time (and be refunded)
                await self._guarded(self._reconciler.expire_unreachable())

    # --- tasks ---------------------------------------------------------------------------

    def _spawn(self, work: Awaitable[object]) -> None:
        assert self._tasks is not None, "the listener is not running"
        self._tasks.create_task(self._guarded(work))

    async def _guarded(self, work: Awaitable[object]) -> None:
        """Run one unit of work; a failure is logged (reconciliation repairs what it left)."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("listener of %s: a step failed", self.backend)
