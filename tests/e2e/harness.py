"""Test harness: a real uvicorn server on 127.0.0.1:0, a GraphQL HTTP client, and a
graphql-transport-ws client on the `websockets` library."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from stargraph.app import create_app
from stargraph.bootstrap import Services, SimulateOptions, build_services
from stargraph.domain.types import Role
from stargraph.serve import server_options
from stargraph.settings import Settings, load_settings
from stargraph.store.db import create_database, drop_database, migrate
from tests.redis_cleanup import forget_prefix

PROTOCOL = Subprotocol("graphql-transport-ws")


@asynccontextmanager
async def running_server(app: ASGIApp, **options: Any) -> AsyncIterator[str]:
    """Serve `app` (lifespan included) on a free loopback port with uvicorn's `options`
    (but a short graceful shutdown); yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    host, port = sock.getsockname()[:2]
    options = {**options, "timeout_graceful_shutdown": 5}
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # start-up failed: raise its error
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class GraphQLError(AssertionError):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(json.dumps(errors, ensure_ascii=False))
        self.errors = errors

    @property
    def code(self) -> str | None:
        code: str | None = self.errors[0].get("extensions", {}).get("code")
        return code


class Client:
    """GraphQL over HTTP as one user (or anonymous)."""

    def __init__(self, http: httpx.AsyncClient, token: str | None = None) -> None:
        self.http = http
        self.token = token

    def as_user(self, token: str | None) -> Client:
        return Client(self.http, token)

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The data of a successful operation; GraphQLError when it has errors."""
        body = await self.post(query, variables)
        if body.get("errors"):
            raise GraphQLError(body["errors"])
        data: dict[str, Any] = body["data"]
        return data

    async def register(self, username: str, password: str = "correct horse 1") -> User:
        data = await self.data(
            "mutation($u: String!, $p: String!) { register(username: $u, password: $p) "
            "{ token user { id } } }",
            {"u": username, "p": password},
        )
        return User(self.http, data["register"]["token"], data["register"]["user"]["id"])


class User(Client):
    """A signed-in user's client, with its token and its user id."""

    token: str

    def __init__(self, http: httpx.AsyncClient, token: str, user_id: str) -> None:
        super().__init__(http, token)
        self.user_id = user_id


class Subscriptions:
    """One graphql-transport-ws connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self, wait_s: float = 30.0) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), wait_s))
            if message["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            return message

    async def first_messages(
        self,
        ops: set[str],
        provoke: Callable[[], Awaitable[object]],
        *,
        tries: int = 10,
        wait_s: float = 1.0,
    ) -> dict[str, dict[str, Any]]:
        """The first message of each of `ops`, after `provoke` (e.g. a submission) made
        something to send them. A subscription goes live a moment after its `subscribe`
        message (there is no acknowledgement), and it is not sent what happened before: so
        `provoke` runs again, up to `tries` times, while some op has heard nothing."""
        first: dict[str, dict[str, Any]] = {}
        for _ in range(tries):
            await provoke()
            with contextlib.suppress(TimeoutError):
                while not ops <= first.keys():
                    message = await self.receive(wait_s)
                    if message.get("id") in ops:
                        first.setdefault(message["id"], message)
            if ops <= first.keys():
                return first
        raise AssertionError(f"no message for {sorted(ops - first.keys())} after {tries} tries")

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        op_id = str(next(self._ids))
        await self.send(
            {"id": op_id, "type": "subscribe",
             "payload": {"query": query, "variables": variables or {}}}
        )  # fmt: skip
        return op_id

    async def events(self, op_id: str, wait_s: float = 30.0) -> AsyncIterator[dict[str, Any]]:
        """The `next` payloads of one operation until it completes; errors raise."""
        while True:
            message = await self.receive(wait_s)
            if message.get("id") != op_id:
                continue
            if message["type"] == "complete":
                return
            if message["type"] == "error":
                raise GraphQLError(message["payload"])
            payload = message["payload"]
            if payload.get("errors"):
                raise GraphQLError(payload["errors"])
            yield payload["data"]


@asynccontextmanager
async def subscriptions(
    base_url: str, token: str | None = None, *, init: dict[str, Any] | None = None
) -> AsyncIterator[Subscriptions]:
    """A connected, acknowledged graphql-transport-ws socket."""
    url = base_url.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=[PROTOCOL], open_timeout=10) as ws:
        conn = Subscriptions(ws)
        payload = (
            init if init is not None else ({"Authorization": f"Bearer {token}"} if token else {})
        )
        await conn.send({"type": "connection_init", "payload": payload})
        ack = await conn.receive(10)
        assert ack["type"] == "connection_ack", ack
        yield conn


# ---- a whole StarGraph on loopback ----------------------------------------------------------


def redis_url_for_tests() -> str:
    """A real Redis when one listens (always in CI), else a private in-process one."""
    from tests.conftest import REDIS_URL, SERVICES_REQUIRED, _reachable, need_service

    if SERVICES_REQUIRED or _reachable("127.0.0.1", 6379):
        need_service("Redis", "127.0.0.1", 6379)
        return REDIS_URL
    return f"memory://{uuid.uuid4().hex}"


def free_port() -> int:
    """A loopback port nothing listens on (as of now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def log_tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the process at `url` answers `/healthz` (at most a minute); fails with its log
    if it dies or does not start."""
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            if proc.poll() is not None:
                raise AssertionError(f"process died: {log_tail(log)}")
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not start: {log_tail(log)}")


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    tmp_path.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "database_url": f"sqlite://{tmp_path / 'stargraph.sqlite3'}",
        "redis_url": redis_url_for_tests(),
        "redis_prefix": f"t{uuid.uuid4().hex[:12]}",
        "storage_dir": tmp_path / "images",
        "comfyui_urls": [],
        "ollama_url": closed_port_url(),
        "log_level": "WARNING",
    }
    values.update(overrides)
    return load_settings(**values)


@dataclass
class Stack:
    url: str
    services: Services
    client: Client

    @property
    def settings(self) -> Settings:
        return self.services.settings

    async def until_open_subscriptions(self, count: int) -> None:
        """Wait (10 s at most) until the server counts `count` open subscriptions: it counts
        one a moment after its `subscribe` message, and stops a moment after its socket
        closes. (Counted is not yet live: see `Subscriptions.first_messages`.)"""
        for _ in range(500):
            text = (await self.client.http.get("/metrics")).text
            line = next(
                x for x in text.splitlines() if x.startswith("stargraph_subscriptions_open ")
            )
            if float(line.split()[1]) == count:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"open subscriptions not {count} within 10 s")

    async def admin(self, username: str = "root") -> User:
        await self.services.users.create_user(username, "admin password 1", role=Role.ADMIN)
        data = await self.client.data(
            'mutation($u: String!) { login(username: $u, password: "admin password 1") '
            "{ token user { id } } }",
            {"u": username},
        )
        return User(self.client.http, data["login"]["token"], data["login"]["user"]["id"])


@asynccontextmanager
async def running_stargraph(
    tmp_path: Path,
    *,
    simulate: SimulateOptions | None = None,
    worker: bool = True,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    """Build the real services (SQLite file, Redis, simulators) and serve the real app.
    Redis keys under a prefix it chose are deleted afterwards; a caller that passes
    `redis_prefix` (to run the service again on the same keys) deletes them itself."""
    settings = make_settings(tmp_path, **overrides)
    await migrate(settings.database_url)
    services = await build_services(settings, simulate=simulate, worker=worker)
    try:
        app = create_app(services.settings, services, run_worker=worker)
        async with (
            running_server(app, **server_options(settings)) as url,
            httpx.AsyncClient(base_url=url, timeout=60) as http,
        ):
            yield Stack(url, services, Client(http))
    finally:
        await services.aclose()
        if "redis_prefix" not in overrides:
            await forget_prefix(settings.redis_url, settings.redis_prefix)


@asynccontextmanager
async def database_url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database of one engine: `sqlite`, `postgres` or `mysql`."""
    from tests.conftest import need_service

    if kind == "sqlite":
        yield f"sqlite://{tmp_path / 'stargraph.sqlite3'}"
        return
    name = f"sg_{uuid.uuid4().hex[:12]}"
    if kind == "postgres":
        need_service("PostgreSQL", "127.0.0.1", 5432)
        url = f"postgres://postgres@127.0.0.1:5432/{name}"
    else:
        need_service("MariaDB", "127.0.0.1", 3306)
        url = f"mysql://root:@127.0.0.1:3306/{name}"
    await create_database(url)
    try:
        yield url
    finally:
        await drop_database(url)
