"""The job: its statuses, the one state machine, and the frozen value the domain passes around."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from stargraph.domain.errors import Conflict, QueueFull
from stargraph.domain.queue import QueuedJob
from stargraph.domain.types import BackendId, JobId, Priority, UserId


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
IN_ENGINE = frozenset({JobStatus.DISPATCHED, JobStatus.RUNNING})

_ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.DISPATCHED, JobStatus.FAILED, JobStatus.CANCELLED}),
    # back to QUEUED when a backend forgot the job (restart) or could not take it
    JobStatus.DISPATCHED: frozenset({JobStatus.RUNNING, JobStatus.QUEUED, *TERMINAL}),
    JobStatus.RUNNING: frozenset({JobStatus.QUEUED, *TERMINAL}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(current: JobStatus, to: JobStatus) -> bool:
    return to in _ALLOWED[current]


def sources_of(to: JobStatus) -> frozenset[JobStatus]:
    """Every status from which `to` may be entered (used for compare-and-set updates)."""
    return frozenset(s for s, targets in _ALLOWED.items() if to in targets)


class TranslationState(enum.StrEnum):
    NOT_NEEDED = "not_needed"  # the prompt had no Chinese text
    TRANSLATED = "translated"
    PASSTHROUGH = "passthrough"  # translation failed; the original text was sent


@dataclass(frozen=True, slots=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class JobParams:
    """What the user asked for, validated and with defaults applied."""

    prompt: str
    negative_prompt: str
    count: int
    width: int
    height: int
    steps: int
    cfg: float
    sampler: str
    scheduler: str
    model: str
    seed: int
    workflow: str
    priority: Priority


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a DISPATCHED or RUNNING job is and since when: what housekeeping compares,
    without the rest of the job."""

    backend: BackendId
    dispatched_at: datetime | None
    started_at: datetime | None


@dataclass(frozen=True, slots=True)
class Job:
    id: JobId
    user_id: UserId
    status: JobStatus
    params: JobParams
    positive_prompt: str  # what the engine receives (translated + enhanced)
    effective_negative_prompt: str
    translated_prompt: str | None
    translation: TranslationState
    cost: int
    created_at: datetime
    graph: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    idempotency_key: str | None = None
    charged: int | None = None  # set at settlement
    backend: BackendId | None = None
    attempts: int = 0
    progress_step: int | None = None
    progress_max: int | None = None
    error: JobError | None = None
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    front: bool = False  # an admin moved it ahead of every band

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def queue_entry(self) -> QueuedJob:
        """What the queue needs to place this job."""
        return QueuedJob(self.id, self.user_id, self.params.priority, self.front)


def transition(job: Job, to: JobStatus, at: datetime) -> Job:
    """Return `job` moved to `to`, stamping the matching time; illegal moves raise Conflict."""
    if not can_transition(job.status, to):
        raise Conflict(f"job {job.id} cannot go from {job.status.value} to {to.value}")
    stamps: dict[str, object] = {}
    if to is JobStatus.DISPATCHED:
        stamps["dispatched_at"] = at
    elif to is JobStatus.RUNNING:
        stamps["started_at"] = at
    elif to is JobStatus.QUEUED:
        stamps.update(
            dispatched_at=None, started_at=None, backend=None, progress_step=None, progress_max=None
        )
    elif to in TERMINAL:
        stamps["finished_at"] = at
    return replace(job, status=to, **stamps)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class NewImage:
    """An image the engine produced, already written to storage."""

    index: int
    path: str  # relative to the storage root
    width: int
    height: int
    seed: int


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[Job]
    has_more: bool


class JobStore(Protocol):
    """Persistence of jobs. Status changes are compare-and-set: the first writer wins.

    `create_queued` holds the cost and inserts the row in one transaction; the finishing
    methods settle the hold in the same transaction as the terminal status, so a job is
    settled exactly once however many listeners or retries see its end.
    """

    async def create_queued(self, job: Job, max_unfinished: int | None = None) -> tuple[Job, bool]:
        """Hold `job.cost` and insert the row; with an idempotency key already used by the
        user, return the existing job and False instead. Raises QueueFull, with nothing
        written, when the user already has `max_unfinished` jobs that are not terminal
        (counted in the transaction that holds), InsufficientPoints or NotFound likewise."""
        ...

    async def get(self, job_id: JobId) -> Job | None: ...

    async def get_by_idempotency_key(self, user_id: UserId, key: str) -> Job | None: ...

    async def count_unfinished(self, user_id: UserId) -> int:
        """The user's jobs that are not terminal (what `max_unfinished` caps)."""
        ...

    async def page_for_user(
        self,
        user_id: UserId | None,
        statuses: frozenset[JobStatus] | None,
        limit: int,
        after: JobId | None,
    ) -> JobPage:
        """Newest first; `after` is the last job id of the previous page; None user = all."""
        ...

    async def queued(self) -> list[QueuedJob]:
        """Every QUEUED job as the queue needs it, oldest first (to rebuild or repair it)."""
        ...

    async def count_queued(self) -> int: ...

    async def in_engine(self, backend: BackendId | None = None) -> list[Job]:
        """DISPATCHED and RUNNING jobs, of one backend or all."""
        ...

    async def placements(self) -> dict[JobId, Placement]:
        """Where every DISPATCHED or RUNNING job is."""
        ...

    async def mark_dispatched(self, job: Job, backend: BackendId, at: datetime) -> Job | None:
        """QUEUED → DISPATCHED on `backend`, counting the attempt, without reading the row
        back. None unless the row is still QUEUED with `job.attempts` attempts (so a copy of
        `job` read earlier cannot count an attempt twice)."""
        ...

    async def undo_dispatch(self, job: Job) -> Job | None:
        """DISPATCHED → QUEUED for a job that was never sent (a standby stood down), its
        attempt uncounted. None unless the row is still DISPATCHED with `job.attempts`
        attempts."""
        ...

    async def mark_running(self, job_id: JobId, at: datetime) -> Job | None:
        """DISPATCHED → RUNNING; None if the job was not DISPATCHED."""
        ...

    async def back_to_queue(self, job_id: JobId) -> Job | None:
        """DISPATCHED/RUNNING → QUEUED (engine forgot it or refused the connection)."""
        ...

    async def record_progress(self, job_id: JobId, step: int, max_steps: int) -> None: ...

    async def record_progress_many(self, progress: Mapping[JobId, tuple[int, int]]) -> None:
        """The engine's progress of many jobs (id → step, max steps), in one write."""
        ...

    async def set_priority(self, job_id: JobId, priority: Priority, front: bool) -> Job | None:
        """Change a QUEUED job's priority; None if it is no longer QUEUED."""
        ...

    async def succeed(
        self, job_id: JobId, images: list[NewImage], price_per_image: int, at: datetime
    ) -> Job | None:
        """→ SUCCEEDED with its images, capturing price × images and releasing the rest.

        None when the job was already terminal (someone else finished it)."""
        ...

    async def finish_unpaid(
        self,
        job_id: JobId,
        to: JobStatus,
        error: JobError | None,
        at: datetime,
        only_from: frozenset[JobStatus] | None = None,
    ) -> Job | None:
        """→ FAILED or CANCELLED, releasing the whole hold; None if already terminal or
        not allowed from the current status (or not one of `only_from`, when given)."""
        ...


async def refuse_when_full(jobs: JobStore, user_id: UserId, limit: int) -> None:
    """Raise QueueFull when the user already has `limit` jobs that are not terminal."""
    if await jobs.count_unfinished(user_id) >= limit:
        raise QueueFull(f"you already have {limit} unfinished jobs; wait for some to finish")
