"""The listener: one ComfyUI socket per backend, turning its messages into job changes.

It reads the socket's events in order and keeps them cheap (status, progress, previews);
each job's ending (download images, store, settle) runs in a task of its own so the socket
never stalls. The slot is freed the moment ComfyUI says the prompt is over, before the
images are fetched, so the dispatcher can fill it while this job is being settled.

On every (re)connect it reconciles the backend's in-flight jobs; on a `status` broadcast it
re-checks jobs that run here under another client id (posted by a worker that died); a
housekeeping tick does a full pass (lost messages, timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from datetime import UTC, datetime

from stargraph.comfy import messages as m
from stargraph.domain.backends import BackendPool, EngineGateway, SlotBook
from stargraph.domain.events import EventBus, JobPreview, JobProgress, JobStarted
from stargraph.domain.jobs import IN_ENGINE, Job, JobStatus, JobStore
from stargraph.domain.progress import (
    Change,
    Follow,
    Previewed,
    Started,
    Stepped,
    apply,
    follow,
)
from stargraph.domain.types import BackendId, JobId
from stargraph.engine.previews import preview_data_url
from stargraph.engine.reconcile import Reconciler
from stargraph.engine.results import Finisher

log = logging.getLogger(__name__)

_FORGET_UNKNOWN = 256  # prompt ids not ours, remembered so they cost one lookup only


def _now() -> datetime:
    return datetime.now(UTC)


class _Live:
    """One job this listener follows."""

    __slots__ = ("follow", "job", "started")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.follow: Follow = follow(job)
        self.started: float | None = None


class Listener:
    def __init__(
        self,
        *,
        backend: BackendId,
        client_id: str,
        socket: Callable[[], AsyncIterable[m.SocketEvent]],
        engine: EngineGateway,
        jobs: JobStore,
        events: EventBus,
        finisher: Finisher,
        reconciler: Reconciler,
        slots: SlotBook,
        pool: BackendPool,
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
        self._slots = slots
        self._pool = pool
        self._on_connect = on_connect
        self._housekeeping_s = housekeeping_s
        self._clock = clock
        self._live: dict[JobId, _Live] = {}
        self._ending: set[JobId] = set()
        self._foreign: set[JobId] = set()
        self._unknown: dict[str, None] = {}
        self._running: JobId | None = None
        self._tasks: asyncio.TaskGroup | None = None

    def expect(self, job: Job) -> None:
        """The dispatcher sent `job` here: follow it without a lookup."""
        if job.id not in self._live:
            self._live[job.id] = _Live(job)

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until `stop`; endings under way are completed before returning."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            reader = tasks.create_task(self._read())
            ticker = tasks.create_task(self._tick(stop))
            await stop.wait()
            reader.cancel()
            await asyncio.wait({ticker})
        self._pool.mark_down(self.backend, "worker stopped")

    # --- reading -------------------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            try:
                async for event in self._socket():
                    await self._guarded(self.handle(event))
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception:
                log.exception("socket of %s failed; reopening", self.backend)
                self._pool.mark_down(self.backend, "socket failed")
                await asyncio.sleep(1.0)

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
        await self._reconcile()
        if self._on_connect is not None:
            self._spawn(self._on_connect(self.backend))

    async def _message(self, message: m.Message) -> None:
        job_id = self._job_of(message)
        if job_id is None:
            return
        live = self._live.get(job_id) or await self._lookup(job_id, message)
        if live is None:
            return
        live.follow, changes = apply(live.follow, message)
        for change in changes:
            await self._carry_out(live, change)

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
            return live
        if job is not None and job.is_terminal and isinstance(message, m.ExecutionStart):
            # ended while it waited inside ComfyUI (a cancel that raced the POST): stop it
            self._spawn(self._engine.interrupt(self.backend, job_id))
        self._unknown[job_id] = None
        if len(self._unknown) > _FORGET_UNKNOWN:
            self._unknown.pop(next(iter(self._unknown)))
        return None

    # --- changes -------------------------------------------------------------------------

    async def _carry_out(self, live: _Live, change: Change) -> None:
        job = live.job
        match change:
            case Started():
                await self._started(live)
            case Stepped(step=step, max_steps=max_steps):
                await self._jobs.record_progress(job.id, step, max_steps)
                await self._events.publish(
                    JobProgress(
                        job_id=job.id,
                        user_id=job.user_id,
                        at=self._clock(),
                        status=JobStatus.RUNNING,
                        step=step,
                        max_steps=max_steps,
                    )
                )
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
                await self._ended(live, change)

    async def _started(self, live: _Live) -> None:
        self._running = live.job.id
        live.started = time.monotonic()
        self._pool.note_checkpoint(self.backend, live.job.params.model)
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

    async def _ended(self, live: _Live, outcome: Change) -> None:
        job = live.job
        self._live.pop(job.id, None)
        if self._running == job.id:
            self._running = None
        if live.started is not None:
            self._pool.note_run_time(self.backend, time.monotonic() - live.started)
        self._pool.set_inflight(self.backend, await self._slots.release(self.backend, job.id))
        self._ending.add(job.id)
        self._spawn(self._finish(job, outcome))

    async def _finish(self, job: Job, outcome: Change) -> None:
        try:
            await self._finisher.end(job, self.backend, outcome)  # type: ignore[arg-type]
        finally:
            self._ending.discard(job.id)

    # --- reconciliation ------------------------------------------------------------------

    async def _reconcile(self) -> None:
        expected = set(self._live)  # followed before the pass began
        report = await self._reconciler.reconcile(skip=self._ending)
        self._foreign = report.foreign
        gone = (expected - report.in_flight - self._ending) | report.ended | report.requeued
        for job_id in gone:
            self._live.pop(job_id, None)

    async def _recheck_foreign(self) -> None:
        report = await self._reconciler.reconcile(only=set(self._foreign), skip=self._ending)
        self._foreign = report.foreign

    async def _tick(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._housekeeping_s)
            if not stop.is_set() and self._pool.is_healthy(self.backend):
                await self._guarded(self._reconcile())

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
