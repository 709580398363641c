"""The ASGI application: GraphQL over HTTP and WebSocket, the other routes, the web client.

`create_app(settings, services=None)` builds everything in its lifespan (or uses the
services a test passes in) and, with `run_worker=True`, runs the worker in the same process.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError

from stargraph import routes
from stargraph.bootstrap import Services, SimulateOptions, build_services
from stargraph.domain.errors import StarGraphError, Unauthenticated
from stargraph.domain.types import unique_hex
from stargraph.middleware import BodyLimit, WebSocketMessageLimit
from stargraph.schema.build import SchemaOptions, build_schema
from stargraph.schema.context import Api, ApiLimits, Context, Loaders, SubscriptionGate
from stargraph.settings import Settings

log = logging.getLogger("stargraph.api")

WEB_DIR = Path(__file__).parent / "web"
GRAPHQL_PATH = "/graphql"
WORKER_STOP_GRACE_S = 30.0  # sends and endings under way finish; leases recover the rest
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _bearer(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _request_id(request: Request | WebSocket) -> str:
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.fullmatch(given) else unique_hex()


class GraphQLView(GraphQL[Context, None]):
    """Strawberry's ASGI view with StarGraph's context and WebSocket authentication."""

    api: Api | None = None  # set by the lifespan

    def decode_json(self, data: str | bytes) -> object:
        """Bytes that are not UTF-8, or JSON that is no request object, are a malformed
        body (400), like bad JSON."""
        try:
            value = super().decode_json(data)
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError("the body is not UTF-8", "", exc.start) from exc
        if not isinstance(value, dict | list):  # a list is a batch, refused later with a 400
            raise json.JSONDecodeError("the body is not a JSON object", "", 0)
        return value

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        assert self.api is not None, "the app's lifespan has not run"
        is_http = request.scope["type"] == "http"
        ctx = Context(
            api=self.api,
            request_id=_request_id(request),
            loaders=Loaders(self.api, cache=is_http),
            client=request.client.host if request.client else None,
        )
        if is_http:
            response.headers["X-Request-ID"] = ctx.request_id
            await _authenticate(ctx, request.headers.get("authorization"))
        return ctx

    async def on_ws_connect(self, context: Context) -> dict[str, object] | None:
        """Authenticate the socket from `connection_init`; a bad token closes it with 4403.
        A socket without a token stays anonymous (subscriptions then say UNAUTHENTICATED)."""
        params = context.connection_params or {}
        header = params.get("Authorization") or params.get("authorization")
        if header is None and isinstance(params.get("token"), str):
            header = f"Bearer {params['token']}"
        if header is None:
            return None
        await _authenticate(context, header if isinstance(header, str) else "")
        if context.principal is None:
            raise ConnectionRejectionError({"message": "invalid or expired token"})
        return None


async def _authenticate(ctx: Context, header: str | None) -> None:
    token = _bearer(header)
    if header is None:
        return
    if token is None:
        ctx.auth_error = Unauthenticated("use `Authorization: Bearer <token>`")
        return
    try:
        ctx.principal = await ctx.api.users.authenticate(token)
        ctx.token = token
    except StarGraphError as exc:
        ctx.auth_error = exc


def _api(services: Services) -> Api:
    s = services.settings
    return Api(
        users=services.users,
        submitter=services.submitter,
        jobs=services.control,
        gallery=services.gallery,
        ledger=services.ledger,
        images=services.image_store,
        queue=services.queue,
        events=services.events,
        workflows=services.catalog,
        capabilities=services.capabilities,
        engine=services.engine_view,
        signer=services.signer,
        subscriptions=SubscriptionGate(
            s.max_subscriptions_per_user, services.metrics.subscriptions_open.set
        ),
        limits=ApiLimits(
            max_page_size=s.max_page_size,
            price_per_image=s.price_per_image,
            image_url_ttl_s=s.image_url_ttl_s,
            max_subscriptions_per_user=s.max_subscriptions_per_user,
        ),
    )


def _route_deps(services: Services) -> routes.RouteDeps:
    return routes.RouteDeps(
        signer=services.signer,
        images=services.image_store,
        files=services.files,
        readiness=services.readiness_checks(),
        scrape=services.scrape_metrics,
    )


@asynccontextmanager
async def _worker(services: Services, enabled: bool) -> AsyncIterator[None]:
    """Run the worker beside the API; on shutdown ask it to stop, then wait (bounded)."""
    if not enabled:
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(services.run_worker(stop), name="stargraph-worker")
    task.add_done_callback(functools.partial(_worker_ended, stop))
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=WORKER_STOP_GRACE_S)
        except TimeoutError:
            log.warning("worker did not stop within the grace period; cancelled")


def _worker_ended(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    """A worker that ends on its own takes the process down (gracefully), so a supervisor
    restarts it instead of leaving an API whose jobs never run."""
    if stop.is_set() or task.cancelled():
        return
    log.critical("the worker stopped unexpectedly; shutting down", exc_info=task.exception())
    os.kill(os.getpid(), signal.SIGTERM)


def _schema_options(settings: Settings) -> SchemaOptions:
    return SchemaOptions(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        introspection=settings.introspection,
    )


def _middleware(settings: Settings) -> list[Middleware]:
    """What every request passes, outermost first: CORS (when origins are allowed), then the
    bounds on bodies and WebSocket messages."""
    stack = [
        Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
        Middleware(WebSocketMessageLimit, max_bytes=settings.max_ws_message_bytes),
    ]
    if settings.allowed_origins:
        stack.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=settings.allowed_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["authorization", "content-type", "x-request-id"],
                expose_headers=["x-request-id"],
                max_age=600,
            ),
        )
    return stack


def _wrapped(app: ASGIApp, middleware: list[Middleware]) -> ASGIApp:
    for cls, args, kwargs in reversed(middleware):
        app = cls(app, *args, **kwargs)
    return app


def _route_path(scope: Scope) -> str:
    """The path below the root path the app is served under (as Starlette's router sees it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class GraphQLFirst:
    """The API's front: `/graphql` goes to the GraphQL view through the same middleware as
    every route, the rest (and the lifespan) to the Starlette app.

    Starlette's own layers (its error and exception middleware, the router) wrap every
    `send` and resume with every await of a request; on the path each submission takes they
    cost a tenth of its CPU outside I/O, and the view needs none of them: it answers its own
    errors, and an exception that escapes it still gets uvicorn's 500."""

    def __init__(self, graphql: ASGIApp, other: Starlette) -> None:
        self._graphql = graphql
        self._other = other

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and _route_path(scope) == GRAPHQL_PATH:
            await self._graphql(scope, receive, send)
        else:
            await self._other(scope, receive, send)


def create_app(
    settings: Settings,
    services: Services | None = None,
    *,
    run_worker: bool = False,
    simulate: SimulateOptions | None = None,
    auto_migrate: bool = False,
) -> GraphQLFirst:
    """The StarGraph ASGI app. Without `services`, the lifespan builds (and closes) them:
    with `run_worker` the worker runs in this process too (`stargraph serve`), `simulate`
    adds in-process simulated backends, and `auto_migrate` migrates a SQLite database."""
    view = GraphQLView(
        build_schema(_schema_options(settings)),
        graphql_ide="graphiql" if settings.graphiql else None,
        allowed_origins=settings.allowed_origins,
        # Strawberry's own per-socket cap answers without a code; ours (per user, any
        # socket) answers RATE_LIMITED first, so Strawberry's is only a backstop.
        max_subscriptions_per_connection=settings.max_subscriptions_per_user + 1,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = services is None
        built = services or await build_services(
            settings, simulate=simulate, auto_migrate=auto_migrate, worker=run_worker
        )
        try:
            view.api = _api(built)
            app.state.routes = _route_deps(built)
            async with _worker(built, run_worker):
                yield
        finally:
            if owned:
                await built.aclose()

    middleware = _middleware(settings)
    other = Starlette(
        routes=[
            *routes.ROUTES,
            Mount("/", StaticFiles(directory=WEB_DIR, html=True, check_dir=False)),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    return GraphQLFirst(_wrapped(view, middleware), other)
