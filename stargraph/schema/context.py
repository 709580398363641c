"""The per-request context resolvers receive: who is calling and the domain objects they call.

`Api` is built once per process by the app; `Context` once per HTTP request or WebSocket
connection. Roles are enforced here, in `require_user` and `require_admin`, and nowhere else
in the schema; ownership is the domain's job (another user's job is NOT_FOUND there).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol

from strawberry.dataloader import DataLoader

from stargraph.domain.capabilities import Capabilities
from stargraph.domain.control import JobControl
from stargraph.domain.errors import Forbidden, RateLimited, StarGraphError, Unauthenticated
from stargraph.domain.events import EventBus
from stargraph.domain.gallery import Gallery, Image, ImageStore, LinkSigner
from stargraph.domain.jobs import Job
from stargraph.domain.ledger import Ledger
from stargraph.domain.queue import JobQueue
from stargraph.domain.submit import Submitter
from stargraph.domain.types import ImageId, JobId, Principal, Role, UserId


class UserView(Protocol):
    """What the schema shows of a user."""

    @property
    def id(self) -> UserId: ...
    @property
    def username(self) -> str: ...
    @property
    def role(self) -> Role: ...
    @property
    def created_at(self) -> datetime: ...


class Session(Protocol):
    """A fresh access token and its user."""

    @property
    def token(self) -> str: ...
    @property
    def user(self) -> UserView: ...


class Users(Protocol):
    async def register(self, username: str, password: str) -> Session: ...

    async def login(self, username: str, password: str, client: str | None = None) -> Session: ...

    async def logout(self, token: str) -> None: ...

    async def authenticate(self, token: str) -> Principal: ...

    async def get(self, user_id: UserId) -> UserView: ...

    async def grant(self, principal: Principal, user_id: UserId, amount: int, reason: str) -> Any:
        """Admin grant; returns the user's new Balance."""
        ...


class BackendView(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def healthy(self) -> bool: ...
    @property
    def inflight(self) -> int: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def mean_run_s(self) -> float | None:
        """Measured engine time per job; None before the first."""
        ...


class EngineView(Protocol):
    """What the API shows of the engines (read from wherever the workers publish it)."""

    async def backends(self) -> Sequence[BackendView]: ...

    async def running(self) -> int: ...


class Workflows(Protocol):
    def names(self) -> Sequence[str]: ...

    def get(self, name: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class ApiLimits:
    max_page_size: int
    price_per_image: int
    image_url_ttl_s: int
    max_subscriptions_per_user: int


class SubscriptionGate:
    """Counts open subscriptions per user in this process; refuses past the limit."""

    def __init__(self, per_user: int, on_change: Callable[[int], None] | None = None) -> None:
        self._per_user = per_user
        self._open: dict[UserId, int] = {}
        self._on_change = on_change

    @property
    def total(self) -> int:
        return sum(self._open.values())

    def enter(self, user_id: UserId) -> None:
        if self._open.get(user_id, 0) >= self._per_user:
            raise RateLimited(f"at most {self._per_user} open subscriptions per user")
        self._open[user_id] = self._open.get(user_id, 0) + 1
        self._changed()

    def leave(self, user_id: UserId) -> None:
        left = self._open.get(user_id, 0) - 1
        if left > 0:
            self._open[user_id] = left
        else:
            self._open.pop(user_id, None)
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.total)


@dataclass(frozen=True, slots=True)
class Api:
    """The domain objects resolvers call; built once per process."""

    users: Users
    submitter: Submitter
    jobs: JobControl
    gallery: Gallery
    ledger: Ledger
    images: ImageStore
    queue: JobQueue
    events: EventBus
    workflows: Workflows
    capabilities: Callable[[], Capabilities]
    engine: EngineView
    signer: LinkSigner
    subscriptions: SubscriptionGate
    limits: ApiLimits
    clock: Callable[[], float] = time.time


class Loaders:
    """Batch loaders of one request (or, uncached, of one WebSocket connection), each made
    on first use: most requests use none."""

    def __init__(self, api: Api, cache: bool) -> None:
        self._api = api
        self._cache = cache

    @cached_property
    def images_by_job(self) -> DataLoader[JobId, list[Image]]:
        return DataLoader(load_fn=self._images_of_jobs, cache=self._cache)

    @cached_property
    def image(self) -> DataLoader[ImageId, Image | None]:
        return DataLoader(load_fn=self._images, cache=self._cache)

    @cached_property
    def position(self) -> DataLoader[JobId, int | None]:
        return DataLoader(load_fn=self._positions, cache=self._cache)

    async def _images_of_jobs(self, ids: list[JobId]) -> list[list[Image]]:
        found = await self._api.images.for_jobs(list(ids))
        return [found.get(i, []) for i in ids]

    async def _images(self, ids: list[ImageId]) -> list[Image | None]:
        return [await self._api.images.get(i) for i in ids]

    async def _positions(self, ids: list[JobId]) -> list[int | None]:
        found = await self._api.queue.positions(list(ids))
        return [found.get(i) for i in ids]


@dataclass(slots=True)
class Context:
    api: Api
    request_id: str
    loaders: Loaders
    principal: Principal | None = None
    token: str | None = None
    auth_error: StarGraphError | None = None
    client: str | None = None  # the caller's address, for throttling
    connection_params: dict[str, object] | None = field(default=None)

    def require_user(self) -> Principal:
        """The caller; UNAUTHENTICATED when no valid token came with the request."""
        if self.principal is None:
            raise self.auth_error or Unauthenticated("sign in first")
        return self.principal

    def require_admin(self) -> Principal:
        principal = self.require_user()
        if not principal.is_admin:
            raise Forbidden("administrators only")
        return principal

    def image_url(self, image_id: ImageId) -> str:
        return self.api.signer.url(image_id, self.api.clock(), self.api.limits.image_url_ttl_s)

    async def job_of(self, job_id: JobId) -> Job:
        return await self.api.jobs.get(self.require_user(), job_id)


@asynccontextmanager
async def open_subscription(ctx: Context) -> AsyncIterator[Principal]:
    """The subscribing user, counted against the per-user limit while the block runs."""
    principal = ctx.require_user()
    ctx.api.subscriptions.enter(principal.user_id)
    try:
        yield principal
    finally:
        ctx.api.subscriptions.leave(principal.user_id)
