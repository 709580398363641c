"""Job events as GraphQL types: the JobEvent interface and one type per domain event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import strawberry
from strawberry.types import Info

from stargraph.domain import events as domain
from stargraph.domain.types import ImageId
from stargraph.schema.context import Context
from stargraph.schema.types import MAX_STEPS, STEP, Image, JobError, JobStatusEnum


@strawberry.interface(description="Something that happened to a job. `cursor` resumes a stream.")
class JobEvent:
    job_id: strawberry.ID
    at: datetime
    status: JobStatusEnum
    cursor: str


@strawberry.type(description="Waiting; sent again with the new position when the queue moves.")
class JobQueued(JobEvent):
    position: int | None


@strawberry.type(description="Accepted by a ComfyUI server; runs when the one before it ends.")
class JobDispatched(JobEvent):
    pass


@strawberry.type
class JobStarted(JobEvent):
    pass


@strawberry.type
class JobProgress(JobEvent):
    step: int = strawberry.field(description=STEP)
    max_steps: int = strawberry.field(description=MAX_STEPS)
    fraction: float


@strawberry.type
class JobPreview(JobEvent):
    image: str = strawberry.field(description="A small preview as a data: URL.")


@strawberry.type
class JobSucceeded(JobEvent):
    image_ids: strawberry.Private[tuple[ImageId, ...]]

    @strawberry.field
    async def images(self, info: Info[Context, None]) -> list[Image]:
        ctx = info.context
        found = await ctx.loaders.image.load_many(list(self.image_ids))
        return [Image.from_domain(i, ctx.image_url(i.id)) for i in found if i is not None]


@strawberry.type
class JobFailed(JobEvent):
    error: JobError


@strawberry.type
class JobCancelled(JobEvent):
    pass


EVENT_TYPES = (
    JobQueued,
    JobDispatched,
    JobStarted,
    JobProgress,
    JobPreview,
    JobSucceeded,
    JobFailed,
    JobCancelled,
)


def _common(event: domain.JobEvent) -> dict[str, Any]:
    return {
        "job_id": strawberry.ID(event.job_id),
        "at": event.at,
        "status": event.status,
        "cursor": event.cursor,
    }


def _fraction(step: int, max_steps: int) -> float:
    return step / max_steps if max_steps else 0.0


_CONVERTERS: dict[type[domain.JobEvent], Callable[[Any, dict[str, Any]], JobEvent]] = {
    domain.JobQueued: lambda e, c: JobQueued(position=e.position, **c),
    domain.JobDispatched: lambda e, c: JobDispatched(**c),
    domain.JobStarted: lambda e, c: JobStarted(**c),
    domain.JobProgress: lambda e, c: JobProgress(
        step=e.step, max_steps=e.max_steps, fraction=_fraction(e.step, e.max_steps), **c
    ),
    domain.JobPreview: lambda e, c: JobPreview(image=e.data_url, **c),
    domain.JobSucceeded: lambda e, c: JobSucceeded(image_ids=e.image_ids, **c),
    domain.JobFailed: lambda e, c: JobFailed(error=JobError(code=e.code, message=e.message), **c),
    domain.JobCancelled: lambda e, c: JobCancelled(**c),
}


def event_to_gql(event: domain.JobEvent) -> JobEvent:
    """The schema value of a domain event."""
    return _CONVERTERS[type(event)](event, _common(event))
