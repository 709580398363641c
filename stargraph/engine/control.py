"""EngineControl for any process that has only the job row: stop a job inside its backend.

A job waiting in ComfyUI's queue is deleted there (and its slot freed at once); a running
one is interrupted (its listener frees the slot when ComfyUI reports the end). A job not
found there is either still on its way (the listener interrupts it if it ever starts, since
the job is terminal by then) or already over. The caller (`JobControl.cancel`) then ends the
job as CANCELLED with its hold released, by compare-and-set, and withdraws it: a worker that
holds it on standby, claimed and not yet sent, lets it go.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from stargraph.domain.backends import BackendUncertain, BackendUnreachable, EngineGateway, SlotBook
from stargraph.domain.jobs import Job

log = logging.getLogger(__name__)


class ComfyEngineControl:
    """`domain.control.EngineControl` over the engine gateway and the shared slots."""

    def __init__(self, engine: EngineGateway, slots: SlotBook) -> None:
        self._engine = engine
        self._slots = slots

    async def cancel(self, job: Job) -> None:
        backend = job.backend
        if backend is None:
            return
        try:
            queue = await self._engine.queue(backend)
            if job.id in queue.pending:
                await self._engine.delete_pending(backend, job.id)
                queue = await self._engine.queue(backend)  # it may have started meanwhile
                if job.id not in queue.running:
                    await self._slots.release(backend, job.id)
                    return
            if job.id in queue.running:
                await self._engine.interrupt(backend, job.id)
        except (BackendUnreachable, BackendUncertain) as exc:
            # The backend is away: reconciliation settles the job when it is back.
            log.warning("could not reach %s to cancel %s: %s", backend, job.id, exc)

    async def withdraw(self, job: Job) -> None:
        try:
            await self._slots.withdraw(job.id)
        except RedisError as exc:  # then it is sent, and interrupted when it starts
            log.warning("could not withdraw %s from standby: %s", job.id, exc)
