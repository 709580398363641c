"""Row ⇄ domain value conversions shared by the store modules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

from tortoise.expressions import Q
from tortoise.fields.data import JSON_DUMPS

from stargraph.domain.gallery import Image
from stargraph.domain.jobs import Job, JobError, JobParams, JobStatus, TranslationState
from stargraph.domain.types import BackendId, ImageId, JobId, Priority, UserId
from stargraph.store.models import ImageRow, JobRow


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: datetime | None) -> datetime | None:
    """Databases without time zones hand back naive UTC datetimes."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def older_than(created_at: datetime, row_id: str) -> Q:
    """Rows after (created_at, id) in newest-first order: the condition of a keyset page."""
    return Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=row_id)


def job_from_row(row: JobRow) -> Job:
    params = JobParams(
        prompt=row.prompt,
        negative_prompt=row.negative_prompt,
        count=row.count,
        width=row.width,
        height=row.height,
        steps=row.steps,
        cfg=row.cfg,
        sampler=row.sampler,
        scheduler=row.scheduler,
        model=row.model,
        seed=row.seed,
        workflow=row.workflow,
        priority=Priority(row.priority),
    )
    error = JobError(row.error_code, row.error_message or "") if row.error_code else None
    return Job(
        id=JobId(row.id),
        user_id=UserId(row.user_id),  # type: ignore[attr-defined]
        status=JobStatus(row.status),
        params=params,
        positive_prompt=row.positive_prompt,
        effective_negative_prompt=row.effective_negative_prompt,
        translated_prompt=row.translated_prompt,
        translation=TranslationState(row.translation),
        cost=row.cost,
        created_at=aware(row.created_at),
        graph=row.graph,
        idempotency_key=row.idempotency_key,
        charged=row.charged,
        backend=BackendId(row.backend) if row.backend else None,
        attempts=row.attempts,
        progress_step=row.progress_step,
        progress_max=row.progress_max,
        error=error,
        dispatched_at=aware(row.dispatched_at),
        started_at=aware(row.started_at),
        finished_at=aware(row.finished_at),
        front=row.front,
    )


# The columns a new job row is written with: every NOT NULL one (the schema has no defaults).
NEW_JOB_COLUMNS = (
    "id", "user_id", "status", "workflow", "prompt", "negative_prompt", "translated_prompt",
    "translation", "positive_prompt", "effective_negative_prompt", "count", "width", "height",
    "steps", "cfg", "sampler", "scheduler", "model", "seed", "priority", "front", "cost",
    "graph", "idempotency_key", "attempts", "created_at",
)  # fmt: skip


def new_job_row(job: Job) -> tuple[object, ...]:
    """A new job's values in `NEW_JOB_COLUMNS` order, as the database drivers take them."""
    p = job.params
    return (
        job.id, job.user_id, job.status.value, p.workflow, p.prompt, p.negative_prompt,
        job.translated_prompt, job.translation.value, job.positive_prompt,
        job.effective_negative_prompt, p.count, p.width, p.height, p.steps, p.cfg, p.sampler,
        p.scheduler, p.model, p.seed, int(p.priority), job.front, job.cost,
        JSON_DUMPS(job.graph), job.idempotency_key, job.attempts, job.created_at,
    )  # fmt: skip


def image_from_row(row: ImageRow) -> Image:
    return Image(
        id=ImageId(row.id),
        job_id=JobId(row.job_id),  # type: ignore[attr-defined]
        user_id=UserId(row.user_id),  # type: ignore[attr-defined]
        index=row.index,
        path=row.path,
        width=row.width,
        height=row.height,
        seed=row.seed,
        created_at=aware(row.created_at),
    )
