"""Shared pieces of the benchmarks: processes, databases, users, GraphQL clients, figures.

Every benchmark runs StarGraph the way it is deployed (its own processes, started with the
`stargraph` command, on loopback) and measures from the outside; this module starts, watches
and stops those processes and prints the tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import platform
import signal
import socket
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stargraph.auth import Passwords  # noqa: E402
from stargraph.broker.connection import connect_redis  # noqa: E402
from stargraph.domain.types import Role  # noqa: E402
from stargraph.store.db import close_db, create_database, drop_database, init_db, migrate  # noqa: E402
from stargraph.store.ledger import TortoiseLedger  # noqa: E402
from stargraph.store.users import UserService  # noqa: E402

REDIS = ("127.0.0.1", 6379)
CHECKPOINT = "bench.safetensors"
PASSWORD = "bench password 1"


# ---- the machine ---------------------------------------------------------------------------


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> str:
    """One line: CPU model, cores, load average, Python."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} vCPU, load average {load}, Python {platform.python_version()}"
    )


async def wake_cost_ms(redis_url: str, samples: int = 60) -> tuple[float, float]:
    """Median PING round trip to Redis over loopback, back to back and after 20 ms idle.

    Latency benchmarks pay the second one on every hop between processes: on a VM whose idle
    vCPUs are slow to wake it can be ten times the first, and it sets the floor of their
    figures."""
    parts = urlsplit(redis_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 6379)
    try:
        medians = []
        for idle_s in (0.0, 0.02):
            times = []
            for _ in range(samples):
                if idle_s:
                    await asyncio.sleep(idle_s)
                began = time.perf_counter()
                writer.write(b"PING\r\n")
                await reader.readline()
                times.append((time.perf_counter() - began) * 1000)
            medians.append(median(times))
        return medians[0], medians[1]
    finally:
        writer.close()


@dataclass
class ProcessClock:
    """CPU time and memory of one process, read from /proc (Linux)."""

    pid: int
    _cpu: float = 0.0
    _at: float = field(default_factory=time.monotonic)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_mb(self, key: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def start(self) -> None:
        self._cpu, self._at = self.cpu_seconds(), time.monotonic()

    def cores_used(self) -> float:
        """Average cores busy since `start()`."""
        return (self.cpu_seconds() - self._cpu) / max(1e-9, time.monotonic() - self._at)


# ---- figures -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out = [title, "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                      enumerate(zip(row, widths, strict=True))) for row in cells]  # fmt: skip
    return "\n".join(out)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


# ---- processes -----------------------------------------------------------------------------


def stargraph_env(**settings: object) -> dict[str, str]:
    """This environment with `STARGRAPH_*` settings (lists joined with commas)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARGRAPH_")}
    for name, value in settings.items():
        if value is None:
            continue
        text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        env[f"STARGRAPH_{name.upper()}"] = text
    env.setdefault("STARGRAPH_LOG_LEVEL", "WARNING")
    return env


@dataclass
class Process:
    name: str
    proc: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Processes:
    """Child processes of one benchmark run; all stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: list[Process] = []

    async def start(self, name: str, args: Sequence[str], env: dict[str, str]) -> Process:
        log = self.workdir / f"{name}.log"
        handle = log.open("wb")
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, env=env, stdout=handle, stderr=asyncio.subprocess.STDOUT
        )
        handle.close()
        process = Process(name, proc, log)
        self.running.append(process)
        return process

    async def stargraph(self, name: str, command: Sequence[str], env: dict[str, str]) -> Process:
        return await self.start(name, [sys.executable, "-m", "stargraph", *command], env)

    async def stop(self, process: Process, grace_s: float = 20.0) -> None:
        if process.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.proc.wait(), grace_s)
            except TimeoutError:
                process.proc.kill()
                await process.proc.wait()
        if process in self.running:
            self.running.remove(process)

    async def __aenter__(self) -> Processes:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for process in reversed(list(self.running)):
            await self.stop(process)


async def wait_until_up(url: str, process: Process | None = None, limit_s: float = 120) -> None:
    """Until `url` answers 200 (start-up only); fails fast when the process dies."""
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            if process is not None and process.proc.returncode is not None:
                raise RuntimeError(f"{process.name} exited:\n{process.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up" + (f":\n{process.tail()}" if process else ""))


# ---- storage -------------------------------------------------------------------------------


def redis_url(required: bool) -> str | None:
    """The Redis on 127.0.0.1:6379 when it listens; else None (in-process), or exit."""
    if reachable(*REDIS):
        return f"redis://{REDIS[0]}:{REDIS[1]}/0"
    if required:
        sys.exit("this benchmark runs several processes: it needs Redis on 127.0.0.1:6379")
    return None


async def forget_prefix(url: str, prefix: str) -> int:
    """Delete every key StarGraph wrote under `prefix` on the Redis at `url` (`{prefix}:…`
    and `prefix:…`); how many."""
    redis = connect_redis(url)
    try:
        keys = [k for pattern in (f"{{{prefix}}}:*", f"{prefix}:*")
                async for k in redis.scan_iter(match=pattern, count=1000)]  # fmt: skip
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
        return len(keys)
    finally:
        await redis.aclose()


@asynccontextmanager
async def fresh_database(spec: str, workdir: Path) -> AsyncIterator[str]:
    """`sqlite` → a new file in `workdir`; a PostgreSQL/MySQL server URL (no database name,
    e.g. `postgres://postgres@127.0.0.1:5432`) → a new database there, dropped afterwards."""
    if spec == "sqlite":
        yield f"sqlite://{workdir / f'bench-{uuid.uuid4().hex[:10]}.sqlite3'}"
        return
    url = f"{spec.rstrip('/')}/sg_bench_{uuid.uuid4().hex[:10]}"
    await create_database(url)
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            await drop_database(url)


def database_label(url: str) -> str:
    return url.split(":", 1)[0].replace("postgres", "PostgreSQL").replace("sqlite", "SQLite")


async def prepare_database(url: str, users: int, points: int, prefix: str = "bench") -> list[str]:
    """Migrate, then create `users` users (cheap password hashes: set-up, not the subject)
    with `points` each, plus an admin; returns their bearer tokens, the admin's last."""
    await migrate(url)
    await init_db(url)
    try:
        cheap = Passwords(time_cost=1, memory_cost=8, parallelism=1)
        service = UserService(TortoiseLedger(), points, 24 * 3600, passwords=cheap)
        tokens = [(await service.register(f"{prefix}{i}", PASSWORD)).token for i in range(users)]
        await service.create_user(f"{prefix}-admin", PASSWORD, role=Role.ADMIN, points=0)
        tokens.append((await service.login(f"{prefix}-admin", PASSWORD)).token)
        return tokens
    finally:
        await close_db()


# ---- GraphQL clients -----------------------------------------------------------------------


class GraphQLFailed(RuntimeError):
    pass


async def gql(
    http: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await http.post("/graphql", json={"query": query, "variables": variables or {}},
                               headers=headers)  # fmt: skip
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise GraphQLFailed(json.dumps(body)[:500])
    return body["data"]


class Socket:
    """One graphql-transport-ws connection (the protocol's few messages, nothing more)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    @classmethod
    @asynccontextmanager
    async def open(cls, base_url: str, token: str | None) -> AsyncIterator[Socket]:
        url = base_url.replace("http://", "ws://") + "/graphql"
        async with connect(url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                           open_timeout=60, ping_interval=None, max_queue=None) as ws:  # fmt: skip
            sock = cls(ws)
            payload = {"Authorization": f"Bearer {token}"} if token else {}
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            ack = json.loads(await ws.recv())
            if ack.get("type") != "connection_ack":
                raise GraphQLFailed(f"no ack: {ack}")
            yield sock

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        op = str(next(self._ids))
        payload = {"query": query, "variables": variables or {}}
        await self.ws.send(json.dumps({"id": op, "type": "subscribe", "payload": payload}))
        return op

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Every message, answering pings."""
        async for raw in self.ws:
            message = json.loads(raw)
            if message.get("type") == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            yield message


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client for load: one connection, one request at a time,
    a fraction of httpx's CPU per request, so the load generator does not become the limit."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        parts = base_url.removeprefix("http://").split(":")
        self.host, self.port = parts[0], int(parts[1])
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = f"Host: {self.host}:{self.port}\r\n{extra}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post_json(
        self, path: str, body: bytes, token: str | None = None
    ) -> tuple[int, bytes]:
        """POST `body`; `token`, when given, is this request's bearer token."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        request = (f"POST {path} HTTP/1.1\r\n{self._head}{auth}Content-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip
        self._writer.write(request)
        assert self._reader is not None
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self._reader.readexactly(length)

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()


def run(main: Any) -> Any:
    """`asyncio.run`, on uvloop when it is installed (lighter load generators)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def http_client(base_url: str, connections: int = 100) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60)
