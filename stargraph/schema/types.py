"""Output types: a skin over domain values, each built by `from_domain`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeAlias

import strawberry
from strawberry.types import Info

from stargraph.domain import gallery, jobs, ledger
from stargraph.domain.jobs import JobStatus, TranslationState
from stargraph.domain.ledger import EntryKind
from stargraph.domain.types import JobId, Priority, Role
from stargraph.schema.context import BackendView, Context, UserView
from stargraph.schema.scalars import SafeInt

# strawberry.enum registers the GraphQL definition on the domain enum itself and returns that
# class, so each alias below is the domain enum, usable in annotations.
strawberry.enum(JobStatus, name="JobStatus")
strawberry.enum(Priority, name="Priority", description="Users may use LOW and NORMAL; admins all.")
strawberry.enum(Role, name="Role")
strawberry.enum(EntryKind, name="LedgerKind")
strawberry.enum(TranslationState, name="Translation")
JobStatusEnum: TypeAlias = JobStatus
PriorityEnum: TypeAlias = Priority
RoleEnum: TypeAlias = Role
LedgerKindEnum: TypeAlias = EntryKind
TranslationEnum: TypeAlias = TranslationState


@strawberry.type
class User:
    id: strawberry.ID
    username: str
    role: RoleEnum
    created_at: datetime

    @classmethod
    def from_domain(cls, user: UserView) -> User:
        return cls(
            id=strawberry.ID(str(user.id)),
            username=user.username,
            role=user.role,
            created_at=user.created_at,
        )


@strawberry.type
class AuthPayload:
    token: str
    user: User


@strawberry.type
class Balance:
    available: int
    frozen: int

    @classmethod
    def from_domain(cls, balance: ledger.Balance) -> Balance:
        return cls(available=balance.available, frozen=balance.frozen)


@strawberry.type
class LedgerEntry:
    id: strawberry.ID
    kind: LedgerKindEnum
    amount: int
    available_after: int
    frozen_after: int
    job_id: strawberry.ID | None
    reason: str | None
    created_at: datetime

    @classmethod
    def from_domain(cls, entry: ledger.LedgerEntry) -> LedgerEntry:
        return cls(
            id=strawberry.ID(str(entry.id)),
            kind=entry.kind,
            amount=entry.amount,
            available_after=entry.available_after,
            frozen_after=entry.frozen_after,
            job_id=strawberry.ID(entry.job_id) if entry.job_id else None,
            reason=entry.reason,
            created_at=entry.created_at,
        )


STEP = "Sampler steps done: those of every sampler that feeds the output, one after the other."
MAX_STEPS = "The job's sampler steps in all: a second (upscaling) pass adds its own."


@strawberry.type
class Progress:
    step: int = strawberry.field(description=STEP)
    max_steps: int = strawberry.field(description=MAX_STEPS)
    fraction: float

    @classmethod
    def of(cls, step: int, max_steps: int) -> Progress:
        return cls(step=step, max_steps=max_steps, fraction=step / max_steps if max_steps else 0.0)


@strawberry.type
class JobError:
    code: str
    message: str

    @classmethod
    def from_domain(cls, error: jobs.JobError) -> JobError:
        return cls(code=error.code, message=error.message)


@strawberry.type
class Image:
    id: strawberry.ID
    url: str = strawberry.field(description="Signed, expiring link; works in a plain <img src>.")
    width: int
    height: int
    seed: SafeInt
    created_at: datetime
    job_id: strawberry.Private[JobId]

    @classmethod
    def from_domain(cls, image: gallery.Image, url: str) -> Image:
        return cls(
            id=strawberry.ID(image.id),
            url=url,
            width=image.width,
            height=image.height,
            seed=SafeInt(image.seed),
            created_at=image.created_at,
            job_id=image.job_id,
        )

    @strawberry.field
    async def job(self, info: Info[Context, None]) -> Job:
        return Job.from_domain(await info.context.job_of(self.job_id))


@strawberry.type
class Job:
    id: strawberry.ID
    status: JobStatusEnum
    prompt: str
    translated_prompt: str | None
    positive_prompt: str = strawberry.field(
        description="What the engine received: the translated prompt with the quality prefix."
    )
    negative_prompt: str = strawberry.field(description="The negative prompt as the user wrote it.")
    effective_negative_prompt: str = strawberry.field(
        description="What the engine received: the negative prompt with the workflow's suffix."
    )
    count: int
    width: int
    height: int
    steps: int
    cfg: float
    sampler: str
    scheduler: str
    model: str
    seed: SafeInt
    workflow: str
    priority: PriorityEnum
    cost: int
    charged: int | None
    progress: Progress | None
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    translation: TranslationEnum = strawberry.field(
        description="PASSTHROUGH: translation failed and the prompt was sent as written."
    )

    # the place a submission was just given, when the job was made by it: no lookup
    known_position: strawberry.Private[int | None] = None

    @strawberry.field(description="1 = next to run; null unless QUEUED.")  # type: ignore[untyped-decorator]
    async def queue_position(self, info: Info[Context, None]) -> int | None:
        if self.status is not JobStatus.QUEUED:
            return None
        if self.known_position is not None:
            return self.known_position
        return await info.context.loaders.position.load(JobId(self.id))

    @strawberry.field
    async def images(self, info: Info[Context, None]) -> list[Image]:
        ctx = info.context
        found = await ctx.loaders.images_by_job.load(JobId(self.id))
        return [Image.from_domain(image, ctx.image_url(image.id)) for image in found]

    @classmethod
    def from_domain(cls, job: jobs.Job) -> Job:
        p = job.params
        progress = None
        if job.progress_step is not None and job.progress_max:
            progress = Progress.of(job.progress_step, job.progress_max)
        return cls(
            id=strawberry.ID(job.id),
            status=job.status,
            prompt=p.prompt,
            translated_prompt=job.translated_prompt,
            positive_prompt=job.positive_prompt,
            negative_prompt=p.negative_prompt,
            effective_negative_prompt=job.effective_negative_prompt,
            count=p.count,
            width=p.width,
            height=p.height,
            steps=p.steps,
            cfg=p.cfg,
            sampler=p.sampler,
            scheduler=p.scheduler,
            model=p.model,
            seed=SafeInt(p.seed),
            workflow=p.workflow,
            priority=p.priority,
            cost=job.cost,
            charged=job.charged,
            progress=progress,
            error=JobError.from_domain(job.error) if job.error else None,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            translation=job.translation,
        )


@strawberry.type
class QueueInfo:
    length: int
    running: int
    healthy_backends: int
    eta_seconds: float | None = strawberry.field(
        description="Time until the queue as it stands now has run, from measured run times."
    )


@strawberry.type(description="A ComfyUI server (admins only).")
class Backend:
    url: str
    healthy: bool
    inflight: int = strawberry.field(
        description="Jobs dispatched to it and not ended: those inside ComfyUI (at most "
        "`max_inflight`), and at most one more that a worker holds on standby, to send the "
        "moment a job there ends."
    )
    last_error: str | None
    mean_run_seconds: float | None

    @classmethod
    def from_domain(cls, backend: BackendView) -> Backend:
        return cls(
            url=backend.url,
            healthy=backend.healthy,
            inflight=backend.inflight,
            last_error=backend.last_error,
            mean_run_seconds=backend.mean_run_s,
        )


@strawberry.type
class Workflow:
    name: str
    description: str


def eta_seconds(waiting: int, backends: Sequence[BackendView]) -> float | None:
    """Seconds until `waiting` jobs have run on the healthy backends, each running one job at
    a time at its measured pace; None when no healthy backend has a measurement yet."""
    rates = [1 / b.mean_run_s for b in backends if b.healthy and b.mean_run_s]
    if not rates:
        return None
    return waiting / sum(rates)
