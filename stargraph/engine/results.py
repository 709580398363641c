"""Ending jobs: images fetched and stored first, then the one compare-and-set settlement.

Used by the listener (live messages), reconciliation (history after a reconnect or for
another process's jobs), the timeout watch and the dispatcher's retry path. Every ending is
safe to repeat: files are written to the same paths atomically, and the store settles only
for the caller whose compare-and-set moved the job.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from stargraph.domain.backends import BackendRejected, EngineGateway, OutputImage
from stargraph.domain.events import EventBus, JobCancelled, JobFailed, JobSucceeded, job_queued
from stargraph.domain.gallery import ImageFiles, ImageStore
from stargraph.domain.jobs import Job, JobError, JobStatus, JobStore, NewImage
from stargraph.domain.progress import (
    Failed,
    Interrupted,
    Outcome,
    Succeeded,
    follow,
    outcome_of_history,
)
from stargraph.domain.queue import JobQueue
from stargraph.domain.types import BackendId, JobId
from stargraph.storage import image_path

log = logging.getLogger(__name__)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NO_IMAGES = "NO_IMAGES"
IMAGES_LOST = "IMAGES_LOST"


def _now() -> datetime:
    return datetime.now(UTC)


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk; None when `data` is not a PNG."""
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE):
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


class Finisher:
    def __init__(
        self,
        *,
        jobs: JobStore,
        images: ImageStore,
        files: ImageFiles,
        engine: EngineGateway,
        events: EventBus,
        queue: JobQueue,
        price_per_image: int,
        clock: Callable[[], datetime] = _now,
        between_steps: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._jobs = jobs
        self._images = images
        self._files = files
        self._engine = engine
        self._events = events
        self._queue = queue
        self._price = price_per_image
        self._clock = clock
        self._between_steps = between_steps  # awaited before each download and the settlement

    async def end(self, job: Job, backend: BackendId, outcome: Outcome) -> bool:
        """Carry out the ending the backend reported; True if this call ended the job."""
        match outcome:
            case Succeeded(images=images):
                produced = list(images) or await self._images_from_history(job, backend)
                return await self.succeed(job, backend, produced)
            case Failed(code=code, message=message):
                return await self.fail(job, code, message, backend)
            case Interrupted():
                return await self.cancel(job, backend)

    async def _images_from_history(self, job: Job, backend: BackendId) -> list[OutputImage]:
        """`executed` was missed (socket dropped): the history entry names the images."""
        record = await self._engine.history(backend, job.id)
        outcome = outcome_of_history(follow(job), record) if record else None
        return list(outcome.images) if isinstance(outcome, Succeeded) else []

    async def succeed(self, job: Job, backend: BackendId, produced: list[OutputImage]) -> bool:
        """Download and store every image, then settle and announce; True if this call
        ended the job. Raises when a download fails for a passing reason (the job stays in
        the engine, and reconciliation tries again)."""
        if not produced:
            return await self.fail(job, NO_IMAGES, "the engine finished without images", backend)
        try:
            stored = []
            for i, image in enumerate(produced):
                await self._step()
                stored.append(await self._store(job, backend, i, image))
        except BackendRejected as exc:  # the backend no longer has the file
            return await self.fail(job, IMAGES_LOST, exc.message, backend)
        await self._step()
        done = await self._jobs.succeed(job.id, stored, self._price, self._clock())
        if done is None:
            return False
        found = await self._images.for_jobs([job.id])
        await self._events.publish(
            JobSucceeded(
                job_id=job.id,
                user_id=job.user_id,
                at=self._clock(),
                status=JobStatus.SUCCEEDED,
                image_ids=tuple(image.id for image in found.get(job.id, [])),
            )
        )
        await self._forget(backend, job.id)
        return True

    async def _step(self) -> None:
        if self._between_steps is not None:
            await self._between_steps()

    async def fail(
        self, job: Job, code: str, message: str, backend: BackendId | None = None
    ) -> bool:
        done = await self._jobs.finish_unpaid(
            job.id, JobStatus.FAILED, JobError(code, message), self._clock()
        )
        if done is None:
            return False
        log.info("job %s failed: %s %s", job.id, code, message[:200])
        await self._events.publish(
            JobFailed(
                job_id=job.id,
                user_id=job.user_id,
                at=self._clock(),
                status=JobStatus.FAILED,
                code=code,
                message=done.error.message if done.error else message,
            )
        )
        if backend is not None:
            await self._forget(backend, job.id)
        return True

    async def cancel(self, job: Job, backend: BackendId | None = None) -> bool:
        done = await self._jobs.finish_unpaid(job.id, JobStatus.CANCELLED, None, self._clock())
        if done is None:
            return False
        await self._events.publish(
            JobCancelled(
                job_id=job.id, user_id=job.user_id, at=self._clock(), status=JobStatus.CANCELLED
            )
        )
        if backend is not None:
            await self._forget(backend, job.id)
        return True

    async def requeue(self, job: Job) -> bool:
        """The backend forgot the job (restart): back to its old place in the queue."""
        back = await self._jobs.back_to_queue(job.id)
        if back is None:
            return False
        await self._queue.requeue_announced(back.queue_entry, job_queued(back, self._clock(), None))
        log.info("job %s went back to the queue (its backend forgot it)", job.id)
        return True

    async def _store(
        self, job: Job, backend: BackendId, index: int, image: OutputImage
    ) -> NewImage:
        data = await self._engine.fetch(backend, image)
        path = image_path(job.user_id, job.id, index)
        await self._files.write(path, data)
        width, height = png_size(data) or (job.params.width, job.params.height)
        return NewImage(index=index, path=path, width=width, height=height, seed=job.params.seed)

    async def _forget(self, backend: BackendId, job_id: JobId) -> None:
        try:
            await self._engine.forget(backend, job_id)
        except Exception as exc:  # the entry only costs the backend memory
            log.debug("could not delete history of %s on %s: %s", job_id, backend, exc)
