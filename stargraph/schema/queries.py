"""Query resolvers: unpack the context, call the domain, convert."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from stargraph.domain.errors import BadUserInput
from stargraph.domain.types import ImageId, JobId
from stargraph.schema import ids
from stargraph.schema.context import Context
from stargraph.schema.relay import Connection, check_first, connection, decode_cursor
from stargraph.schema.types import (
    Backend,
    Balance,
    Image,
    Job,
    JobStatusEnum,
    LedgerEntry,
    QueueInfo,
    User,
    Workflow,
    eta_seconds,
)

Ctx = Info[Context, None]


def _ledger_cursor(after: str | None) -> int | None:
    key = decode_cursor("ledger", after)
    if key is not None and not (key.isdigit() and len(key) < 19):
        raise BadUserInput("invalid cursor", field="after")
    return int(key) if key is not None else None


@strawberry.type
class Query:
    @strawberry.field(description="The signed-in user.")  # type: ignore[untyped-decorator]
    async def me(self, info: Ctx) -> User:
        ctx = info.context
        return User.from_domain(await ctx.api.users.get(ctx.require_user().user_id))

    @strawberry.field(description="Points: available to spend, frozen for unfinished jobs.")  # type: ignore[untyped-decorator]
    async def balance(self, info: Ctx) -> Balance:
        ctx = info.context
        return Balance.from_domain(await ctx.api.ledger.balance(ctx.require_user().user_id))

    @strawberry.field(description="Every move of the caller's points, newest first.")  # type: ignore[untyped-decorator]
    async def ledger(
        self, info: Ctx, first: int | None = 20, after: str | None = None
    ) -> Connection[LedgerEntry]:
        ctx, size, before = (
            info.context,
            check_first(first, info.context.api.limits.max_page_size),
            _ledger_cursor(after),
        )
        rows = await ctx.api.ledger.entries(ctx.require_user().user_id, size + 1, before)
        return connection(
            rows[:size],
            kind="ledger",
            key=lambda e: e.id,
            convert=LedgerEntry.from_domain,
            has_more=len(rows) > size,
            after=after,
        )

    @strawberry.field(description="A job of the caller's (any job for admins).")  # type: ignore[untyped-decorator]
    async def job(self, info: Ctx, id: strawberry.ID) -> Job | None:
        return Job.from_domain(await info.context.job_of(ids.job_id(id)))

    @strawberry.field(description="The caller's jobs, newest first.")  # type: ignore[untyped-decorator]
    async def jobs(
        self,
        info: Ctx,
        first: int | None = 20,
        after: str | None = None,
        status: list[JobStatusEnum] | None = None,
    ) -> Connection[Job]:
        ctx, size = info.context, check_first(first, info.context.api.limits.max_page_size)
        key = decode_cursor("job", after)
        statuses = frozenset(status) if status else None
        page = await ctx.api.jobs.page(
            ctx.require_user(), statuses, size, JobId(key) if key else None
        )
        return connection(
            page.jobs,
            kind="job",
            key=lambda j: j.id,
            convert=Job.from_domain,
            has_more=page.has_more,
            after=after,
        )

    @strawberry.field(description="Waiting jobs, jobs running, healthy backends and an ETA.")  # type: ignore[untyped-decorator]
    async def queue(self, info: Ctx) -> QueueInfo:
        ctx = info.context
        ctx.require_user()
        length, running = await ctx.api.queue.length(), await ctx.api.engine.running()
        backends = await ctx.api.engine.backends()
        return QueueInfo(
            length=length,
            running=running,
            healthy_backends=sum(1 for b in backends if b.healthy),
            eta_seconds=eta_seconds(length + running, backends),
        )

    @strawberry.field(description="The caller's images, newest first.")  # type: ignore[untyped-decorator]
    async def gallery(
        self, info: Ctx, first: int | None = 20, after: str | None = None
    ) -> Connection[Image]:
        ctx, size = info.context, check_first(first, info.context.api.limits.max_page_size)
        key = decode_cursor("image", after)
        page = await ctx.api.gallery.page(ctx.require_user(), size, ImageId(key) if key else None)
        return connection(
            page.images,
            kind="image",
            key=lambda i: i.id,
            has_more=page.has_more,
            convert=lambda i: Image.from_domain(i, ctx.image_url(i.id)),
            after=after,
        )

    @strawberry.field(description="Checkpoints the backends offer.")  # type: ignore[untyped-decorator]
    def models(self, info: Ctx) -> list[str]:
        return list(info.context.api.capabilities().checkpoints)

    @strawberry.field(description="Samplers the backends offer.")  # type: ignore[untyped-decorator]
    def samplers(self, info: Ctx) -> list[str]:
        return list(info.context.api.capabilities().samplers)

    @strawberry.field(description="Schedulers the backends offer.")  # type: ignore[untyped-decorator]
    def schedulers(self, info: Ctx) -> list[str]:
        return list(info.context.api.capabilities().schedulers)

    @strawberry.field(description="Workflows a job may name.")  # type: ignore[untyped-decorator]
    def workflows(self, info: Ctx) -> list[Workflow]:
        catalog = info.context.api.workflows
        return [Workflow(name=n, description=catalog.get(n).description) for n in catalog.names()]

    @strawberry.field(description="Points charged per image produced.")  # type: ignore[untyped-decorator]
    def price_per_image(self, info: Ctx) -> int:
        return info.context.api.limits.price_per_image

    @strawberry.field(description="The ComfyUI servers and their health (admins only).")  # type: ignore[untyped-decorator]
    async def backends(self, info: Ctx) -> list[Backend]:
        info.context.require_admin()
        return [Backend.from_domain(b) for b in await info.context.api.engine.backends()]
