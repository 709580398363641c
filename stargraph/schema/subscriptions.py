"""Subscription resolvers: authorise, then convert the events of a domain stream."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from stargraph.schema import ids
from stargraph.schema.context import Context, open_subscription
from stargraph.schema.events import JobEvent, event_to_gql
from stargraph.schema.streams import job_stream, user_stream

Ctx = Info[Context, None]


@strawberry.type
class Subscription:
    @strawberry.subscription(  # type: ignore[untyped-decorator]
        description="The job's current state first, then live events; ends after the last."
    )
    async def job_events(self, info: Ctx, job_id: strawberry.ID) -> AsyncGenerator[JobEvent, None]:
        async with open_subscription(info.context) as principal:
            async for event in job_stream(info.context.api, principal, ids.job_id(job_id)):
                yield event_to_gql(event)

    @strawberry.subscription(  # type: ignore[untyped-decorator]
        description="Every event of the caller's jobs; `after` (the last cursor seen) first "
        "replays what was missed."
    )
    async def my_job_events(
        self, info: Ctx, after: str | None = None
    ) -> AsyncGenerator[JobEvent, None]:
        async with open_subscription(info.context) as principal:
            async for event in user_stream(info.context.api, principal, after):
                yield event_to_gql(event)
