"""Submitting a text-to-image job: the path from a user's request to a waiting job.

validate → idempotency → rate limit → translate (prompt and negative prompt) → render
→ hold + QUEUED row (one transaction, which also enforces the cap on unfinished jobs) →
enqueue → event. A prompt that needs the model has the cap checked before it is asked too,
so a user at the cap never costs a translation. A rejection leaves no job, no hold and
nothing queued; one refused after the rate limit counted it (translation unavailable, not
enough points, the cap) has used its turn, as the model was asked or the database was.
A crash between the commit and the enqueue loses nothing: `restore_queue` (the sweeper)
puts QUEUED jobs that the queue lacks back in it, and tells their owners.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from stargraph.domain.capabilities import Capabilities
from stargraph.domain.errors import Forbidden
from stargraph.domain.events import job_queued
from stargraph.domain.jobs import (
    Job,
    JobParams,
    JobStatus,
    JobStore,
    TranslationState,
    refuse_when_full,
)
from stargraph.domain.params import SubmitRequest, validate
from stargraph.domain.queue import JobQueue
from stargraph.domain.translation import PromptTranslator, enhance, needs_translation
from stargraph.domain.types import JobId, Principal, Priority, new_job_id
from stargraph.domain.workflows import WorkflowCatalog

USER_PRIORITIES = frozenset({Priority.LOW, Priority.NORMAL})

# How far a job's prompts are from what the user wrote reaching the engine in English.
_TRANSLATION_RANK = {
    TranslationState.NOT_NEEDED: 0,
    TranslationState.TRANSLATED: 1,
    TranslationState.PASSTHROUGH: 2,
}


def worst_translation(*states: TranslationState) -> TranslationState:
    """The job's translation state from its prompts': PASSTHROUGH if any fell back."""
    return max(states, key=_TRANSLATION_RANK.__getitem__)


class Limiter(Protocol):
    """Per-key rate limits (`broker.limits.RateLimiter`)."""

    async def hit(self, key: str, limit: int, window_s: float) -> None:
        """Count one use of `key`; raise RateLimited past `limit` per window."""
        ...


@dataclass(frozen=True, slots=True)
class SubmitPolicy:
    """The numbers a submission is checked and charged against (from the settings)."""

    price_per_image: int
    submits_per_minute: int
    max_queued_per_user: int
    default_model: str | None


@dataclass(frozen=True, slots=True)
class Submitted:
    """The job, and its 1-based queue position (None when it is not waiting)."""

    job: Job
    position: int | None


def _now() -> datetime:
    return datetime.now(UTC)


class Submitter:
    """The `submitText2Image` use case."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        queue: JobQueue,
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
        self._limiter = limiter
        self._translator = translator
        self._catalog = catalog
        self._capabilities = capabilities
        self._policy = policy
        self._clock = clock
        self._rng = rng or random.SystemRandom()

    async def submit(self, principal: Principal, request: SubmitRequest) -> Submitted:
        """Validate, charge (hold) and queue one job; the same idempotency key returns the
        job created the first time, held once. Any refusal leaves no job, no hold and
        nothing queued."""
        params = self._validate(principal, request)
        key = request.idempotency_key
        if key is not None:
            existing = await self._jobs.get_by_idempotency_key(principal.user_id, key)
            if existing is not None:
                return Submitted(existing, await self._position_of(existing))
        await self._limiter.hit(
            f"submit:{principal.user_id}", self._policy.submits_per_minute, 60.0
        )
        limit = self._policy.max_queued_per_user
        if self._needs_model(params):
            await refuse_when_full(self._jobs, principal.user_id, limit)
        job, created = await self._jobs.create_queued(
            await self._prepare(principal, params, key), limit
        )
        if not created:  # a concurrent submission with the same key won
            return Submitted(job, await self._position_of(job))
        return Submitted(job, await self._enqueue(job))

    def _validate(self, principal: Principal, request: SubmitRequest) -> JobParams:
        params = validate(
            request,
            self._capabilities(),
            self._catalog,
            self._policy.default_model,
            self._rng,
        )
        if params.priority not in USER_PRIORITIES and not principal.is_admin:
            raise Forbidden("only administrators may submit with HIGH or URGENT priority")
        return params

    @staticmethod
    def _needs_model(params: JobParams) -> bool:
        return needs_translation(params.prompt) or needs_translation(params.negative_prompt)

    async def _position_of(self, job: Job) -> int | None:
        """A known job's place; a QUEUED one the queue lacks (its submitter is between the
        commit and the enqueue, or crashed there) is enqueued now."""
        if job.status is not JobStatus.QUEUED:
            return None
        position = await self._queue.position(job.id)
        if position is None:
            position = await _put_back(self._jobs, self._queue, job.id, self._clock)
        return position

    async def _prepare(self, principal: Principal, params: JobParams, key: str | None) -> Job:
        workflow = self._catalog.get(params.workflow)
        prompt = await self._translator.translate(params.prompt)
        negative_prompt = await self._translator.translate(params.negative_prompt)
        positive, negative = enhance(
            prompt.text,
            negative_prompt.text,
            workflow.prompt_prefix,
            workflow.negative_suffix,
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
            translated_prompt=prompt.translated,
            translation=worst_translation(prompt.state, negative_prompt.state),
            cost=params.count * self._policy.price_per_image,
            created_at=self._clock(),
            graph=graph,
            idempotency_key=key,
        )

    async def _enqueue(self, job: Job) -> int | None:
        # one step: no dispatcher can take the job before its JobQueued is out
        announced = job_queued(job, self._clock(), None)
        position = await self._queue.enqueue_announced(job.queue_entry, announced)
        return position or None  # 0: the sweeper queued it first and a dispatcher has it


async def restore_queue(
    jobs: JobStore, queue: JobQueue, clock: Callable[[], datetime] = _now
) -> list[JobId]:
    """Put every QUEUED job that the queue does not hold back in it (after a crash between
    the commit and the enqueue, or an emptied Redis), oldest first; returns the ids put
    back. The owner of one the queue did not know gets its JobQueued.

    Jobs leased to a dispatcher are left alone (the queue's enqueue is a no-op for them, and
    an expired lease returns the job by itself). A job whose row left QUEUED since it was
    listed is skipped: each one is read again right before it is enqueued.

    It runs on every housekeeping pass, so it first compares two counts: while the queue
    holds at least as many jobs as there are QUEUED rows, nothing is listed. (A stale entry
    can hide a missing job until a dispatcher claims and drops it; then the counts differ.)
    """
    if await jobs.count_queued() <= await queue.count_held():
        return []
    waiting = await jobs.queued()
    positions = await queue.positions([job.job_id for job in waiting])
    restored: list[JobId] = []
    for job in waiting:
        if positions.get(job.job_id) is None and await _put_back(jobs, queue, job.job_id, clock):
            restored.append(job.job_id)
    return restored


async def _put_back(
    jobs: JobStore, queue: JobQueue, job_id: JobId, clock: Callable[[], datetime]
) -> int | None:
    """Enqueue a job the queue does not show as waiting, if its row is still QUEUED; its
    position, or None when it is not waiting (a dispatcher has it, or it moved on).

    A job the queue does not know is added with its JobQueued, as its submitter would have
    done. One the queue parked (sent, then taken back by an undone dispatch) goes back to
    its old place, unannounced, as the queue's plain enqueue does: the late-enqueue rule of
    `enqueue_announced` would leave it parked for good."""
    current = await jobs.get(job_id)
    if current is None or current.status is not JobStatus.QUEUED:
        return None
    announced = job_queued(current, clock(), None)
    position = await queue.enqueue_announced(current.queue_entry, announced)
    if not position:  # known to the queue: leased (left alone) or parked (restored)
        position = await queue.enqueue(current.queue_entry)
    return position or None  # 0: leased, a dispatcher has it
