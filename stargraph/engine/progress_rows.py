"""The jobs' progress rows, written for every listener of the worker in one statement a tick.

The row's progress serves only snapshots (a subscriber who joins a running job, the job
query); the live steps travel as events. So the newest step of each job is kept here and
written for all jobs at once every `interval_s`: one statement per tick however many jobs
run, instead of one per progress event. A job's last step is written at once, so an ended
job's row shows it; writes never overlap, so an older step cannot land after a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from stargraph.domain.jobs import JobStore
from stargraph.domain.types import JobId

log = logging.getLogger(__name__)


class ProgressRows:
    def __init__(self, jobs: JobStore, interval_s: float = 1.0) -> None:
        self._jobs = jobs
        self._interval_s = interval_s
        self._pending: dict[JobId, tuple[int, int]] = {}
        self._writing = asyncio.Lock()

    def note(self, job_id: JobId, step: int, max_steps: int) -> None:
        """The job reached `step`; written with the next tick."""
        self._pending[job_id] = (step, max_steps)

    async def write_now(self, job_id: JobId, step: int, max_steps: int) -> None:
        """The job reached `step`: write it now (after a write under way, never before)."""
        self._pending.pop(job_id, None)
        async with self._writing:
            await self._jobs.record_progress_many({job_id: (step, max_steps)})

    def forget(self, job_id: JobId) -> None:
        """The job left the backend: a step not yet written no longer matters."""
        self._pending.pop(job_id, None)

    async def run(self, stop: asyncio.Event) -> None:
        """Write every tick until `stop`, then once more."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval_s)
            await self.flush()

    async def flush(self) -> None:
        async with self._writing:
            batch, self._pending = self._pending, {}
            try:
                await self._jobs.record_progress_many(batch)
            except Exception:
                log.exception("could not write the progress of %d job(s)", len(batch))
                for job_id, progress in batch.items():  # next time, unless a newer step came
                    self._pending.setdefault(job_id, progress)
