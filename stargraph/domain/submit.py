"""Submitting a text-to-image job: the path from a user's request to a waiting job.

validate → idempotency → per-user limits → translate → render → hold + QUEUED row (one
transaction) → enqueue → event. A rejection at any step leaves nothing behind.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from stargraph.domain.capabilities import Capabilities
from stargraph.domain.errors import Forbidden, QueueFull
from stargraph.domain.events import EventBus, JobQueued
from stargraph.domain.jobs import Job, JobParams, JobStatus, JobStore
from stargraph.domain.params import SubmitRequest, validate
from stargraph.domain.queue import JobQueue, QueuedJob
from stargraph.domain.translation import PromptTranslator, enhance
from stargraph.domain.types import JobId, Principal, Priority, new_job_id
from stargraph.domain.workflows import WorkflowCatalog

USER_PRIORITIES = frozenset({Priority.LOW, Priority.NORMAL})


class Limiter(Protocol):
    async def hit(self, key: str, limit: int, window_s: float) -> None:
        """Count one use of `key`; raise RateLimited past `limit` per window."""
        ...


@dataclass(frozen=True, slots=True)
class SubmitPolicy:
    price_per_image: int
    submits_per_minute: int
    max_queued_per_user: int
    default_model: str | None


@dataclass(frozen=True, slots=True)
class Submitted:
    job: Job
    position: int | None


def _now() -> datetime:
    return datetime.now(UTC)


class Submitter:
    def __init__(
        self,
        *,
        jobs: JobStore,
        queue: JobQueue,
        events: EventBus,
        limiter: Limiter,
        translator: PromptTranslator,
        catalog: WorkflowCatalog,
        capabilities: Callable[[], Capabilities],
        policy: SubmitPolicy,
        clock: Callable[[], datetime] = _now,
        rng: random.Random | None = None,
    ) -> None:
        self._jobs = jobs
        self._queue = queue
        self._events = events
        self._limiter = limiter
        self._translator = translator
        self._catalog = catalog
        self._capabilities = capabilities
        self._policy = policy
        self._clock = clock
        self._rng = rng or random.SystemRandom()

    async def submit(self, principal: Principal, request: SubmitRequest) -> Submitted:
        """Validate, charge (hold) and queue one job; the same idempotency key returns the
        job created the first time, held once."""
        params = self._validate(principal, request)
        if request.idempotency_key is not None:
            existing = await self._jobs.get_by_idempotency_key(
                principal.user_id, request.idempotency_key
            )
            if existing is not None:
                return Submitted(existing, await self._queue.position(existing.id))
        await self._check_limits(principal)
        job = await self._prepare(principal, params, request.idempotency_key)
        job, created = await self._jobs.create_queued(job)
        if not created:
            return Submitted(job, await self._queue.position(job.id))
        return Submitted(job, await self._enqueue(job))

    def _validate(self, principal: Principal, request: SubmitRequest) -> JobParams:
        params = validate(
            request, self._capabilities(), self._catalog, self._policy.default_model, self._rng
        )
        if params.priority not in USER_PRIORITIES and not principal.is_admin:
            raise Forbidden("only administrators may submit with HIGH or URGENT priority")
        return params

    async def _check_limits(self, principal: Principal) -> None:
        await self._limiter.hit(
            f"submit:{principal.user_id}", self._policy.submits_per_minute, 60.0
        )
        if await self._jobs.count_unfinished(principal.user_id) >= self._policy.max_queued_per_user:
            raise QueueFull(
                f"you already have {self._policy.max_queued_per_user} unfinished jobs; "
                "wait for some to finish"
            )

    async def _prepare(self, principal: Principal, params: JobParams, key: str | None) -> Job:
        workflow = self._catalog.get(params.workflow)
        outcome = await self._translator.translate(params.prompt)
        positive, negative = enhance(
            outcome.text, params.negative_prompt, workflow.prompt_prefix, workflow.negative_suffix
        )
        job_id = new_job_id()
        graph = self._catalog.render(params.workflow, job_id, params, positive, negative)
        return Job(
            id=job_id,
            user_id=principal.user_id,
            status=JobStatus.QUEUED,
            params=params,
            positive_prompt=positive,
            effective_negative_prompt=negative,
            translated_prompt=outcome.translated,
            translation=outcome.state,
            cost=params.count * self._policy.price_per_image,
            created_at=self._clock(),
            graph=graph,
            idempotency_key=key,
        )

    async def _enqueue(self, job: Job) -> int:
        position = await self._queue.enqueue(
            QueuedJob(job.id, job.user_id, job.params.priority, job.front)
        )
        await self._events.publish(
            JobQueued(
                job_id=job.id,
                user_id=job.user_id,
                at=self._clock(),
                status=JobStatus.QUEUED,
                position=position,
            )
        )
        await self._events.queue_moved()
        return position


async def restore_queue(jobs: JobStore, queue: JobQueue) -> list[JobId]:
    """Put every QUEUED job that the queue does not hold back in it (after a crash between
    the commit and the enqueue, or an emptied Redis); returns the ids put back."""
    waiting = await jobs.queued()
    positions = await queue.positions([job.id for job in waiting])
    missing = [job for job in waiting if positions.get(job.id) is None]
    for job in missing:
        await queue.enqueue(QueuedJob(job.id, job.user_id, job.params.priority, job.front))
    return [job.id for job in missing]
