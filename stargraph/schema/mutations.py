"""Mutation resolvers. Each either completes or raises before changing anything."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from stargraph.domain.errors import Unauthenticated
from stargraph.domain.types import Priority
from stargraph.schema import ids
from stargraph.schema.context import Context
from stargraph.schema.inputs import Text2ImageInput
from stargraph.schema.types import AuthPayload, Balance, Job, PriorityEnum, User

Ctx = Info[Context, None]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create an account (with the signup points) and sign in.")  # type: ignore[untyped-decorator]
    async def register(self, info: Ctx, username: str, password: str) -> AuthPayload:
        session = await info.context.api.users.register(username, password)
        return AuthPayload(token=session.token, user=User.from_domain(session.user))

    @strawberry.mutation(description="Sign in; send the token as `Authorization: Bearer …`.")  # type: ignore[untyped-decorator]
    async def login(self, info: Ctx, username: str, password: str) -> AuthPayload:
        ctx = info.context
        session = await ctx.api.users.login(username, password, client=ctx.client)
        return AuthPayload(token=session.token, user=User.from_domain(session.user))

    @strawberry.mutation(description="Revoke the token this request was sent with.")  # type: ignore[untyped-decorator]
    async def logout(self, info: Ctx) -> bool:
        ctx = info.context
        ctx.require_user()
        if ctx.token is None:
            raise Unauthenticated("sign in first")
        await ctx.api.users.logout(ctx.token)
        return True

    @strawberry.mutation(description="Charge (freeze) count × price points and queue the job.")  # type: ignore[untyped-decorator]
    async def submit_text2_image(self, info: Ctx, input: Text2ImageInput) -> Job:
        ctx = info.context
        submitted = await ctx.api.submitter.submit(ctx.require_user(), input.to_domain())
        job = Job.from_domain(submitted.job)
        job.known_position = submitted.position
        return job

    @strawberry.mutation(description="Cancel a job in any state before it ends; refunds it.")  # type: ignore[untyped-decorator]
    async def cancel_job(self, info: Ctx, id: strawberry.ID) -> Job:
        ctx = info.context
        return Job.from_domain(await ctx.api.jobs.cancel(ctx.require_user(), ids.job_id(id)))

    @strawberry.mutation(description="Move a waiting job to another band (toFront: admins).")  # type: ignore[untyped-decorator]
    async def reprioritize_job(
        self,
        info: Ctx,
        id: strawberry.ID,
        priority: PriorityEnum | None = None,
        to_front: bool | None = False,
    ) -> Job:
        ctx, band = info.context, Priority(priority) if priority is not None else None
        job = await ctx.api.jobs.reprioritize(
            ctx.require_user(), ids.job_id(id), band, bool(to_front)
        )
        return Job.from_domain(job)

    @strawberry.mutation(description="Delete one of the caller's images (file and record).")  # type: ignore[untyped-decorator]
    async def delete_image(self, info: Ctx, id: strawberry.ID) -> bool:
        ctx = info.context
        await ctx.api.gallery.delete(ctx.require_user(), ids.image_id(id))
        return True

    @strawberry.mutation(description="Add (or, negative, remove) points (admins only).")  # type: ignore[untyped-decorator]
    async def grant_points(
        self, info: Ctx, user_id: strawberry.ID, amount: int, reason: str
    ) -> Balance:
        ctx = info.context
        balance = await ctx.api.users.grant(
            ctx.require_admin(), ids.user_id(user_id), amount, reason
        )
        return Balance.from_domain(balance)
