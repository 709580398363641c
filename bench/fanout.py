"""Live progress fan-out: N users each following their own running job on ONE API process.

    python bench/fanout.py                       # 1 000 users, 2 progress events/s each, 15 s
    python bench/fanout.py --users 200 --window 10 --database-url postgres://postgres@127.0.0.1:5432

Four kinds of process, all on loopback, with one Redis (needed: 127.0.0.1:6379):
- simulators: this script with `--serve-sims`, N simulated ComfyUI backends behind one port
  (`/s/<i>/…`), no previews, one sampler step every 1/rate s; it notes when each progress
  message is emitted (`time.monotonic()`, which every process on the machine shares). Each
  job steps on its own schedule from its start, as on its own GPU: a busy event loop delays
  a step, never the ones after it, so the simulators do not drift into lockstep;
- the worker (`stargraph worker`, one job in flight per backend, so every job runs at once);
- the API (`stargraph api`): the process measured;
- this process: N users, each with a graphql-transport-ws socket, submits a job and follows it
  with `jobEvents(jobId)`, noting when each `JobProgress` arrives.

Once every job is running, a window of `--window` seconds is measured: latency from the
simulator's progress message to the subscriber (p50/p99/max), deliveries per second, the API
process's CPU (cores, and ms per delivery: the figure that carries over to a machine where the
API has a core of its own) and memory (RSS now, and its peak). Targets at 1 000 users:
p99 ≤ 50 ms, RSS ≤ 250 MB. `--profile DIR` records the API and the worker with py-spy
during the window (`pip install py-spy`; not a project dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CHECKPOINT,
    ProcessClock,
    Processes,
    RawHttp,
    Socket,
    database_label,
    forget_prefix,
    free_port,
    fresh_database,
    machine,
    percentile,
    prepare_database,
    redis_url,
    run,
    stargraph_env,
    table,
    wait_until_up,
)

from stargraph.serve import freeze_startup_heap

SUBMIT = "mutation($i: Text2ImageInput!) { submitText2Image(input: $i) { id } }"
FOLLOW = {
    "job": "subscription($id: ID!) { jobEvents(jobId: $id) { __typename jobId status "
    "... on JobProgress { step maxSteps } } }",
    "user": "subscription { myJobEvents { __typename jobId status "
    "... on JobProgress { step maxSteps } } }",
}
STREAM = {"job": "jobEvents(jobId)", "user": "myJobEvents"}
BACKENDS = "query { backends { healthy } }"
MAX_STEPS = 100  # the API's limit
GRACE_S = 3.0  # after the window, how long a late delivery still counts (as late, not lost)


# ---- the simulators' process -------------------------------------------------------------------


def serve_sims(port: int, count: int, step_time: float) -> None:
    """N simulators behind one uvicorn server; `GET /records` lists progress emit times."""
    import uvicorn

    from stargraph.comfy.simulator import KEEP_ALIVE_S, Simulator, SimulatorConfig

    config = SimulatorConfig(step_time=step_time, checkpoints=(CHECKPOINT,), previews=False)
    sims = [Simulator(config) for _ in range(count)]
    emitted: list[tuple[str, int, float]] = []
    for sim in sims:
        _note_progress(sim, emitted)

    async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                  send: Callable[[Any], Awaitable[None]]) -> None:  # fmt: skip
        if scope["type"] == "lifespan":
            await _lifespan(sims, receive, send)
            return
        parts = scope["path"].split("/", 3)  # "", "s", "<i>", "rest"
        if scope["path"] == "/records":
            await _json(send, emitted)
            return
        inner = {**scope, "path": "/" + parts[3] if len(parts) > 3 else "/",
                 "root_path": f"/s/{parts[2]}"}  # fmt: skip
        inner["raw_path"] = inner["path"].encode()
        await sims[int(parts[2])].app(inner, receive, send)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(app, access_log=False, log_level="warning",
                                           ws_ping_interval=None, backlog=4096,
                                           timeout_keep_alive=KEEP_ALIVE_S))  # fmt: skip
    freeze_startup_heap()  # like `stargraph api` and `worker`: no long full collections
    server.run(sockets=[sock])


def _note_progress(sim: Any, emitted: list[tuple[str, int, float]]) -> None:
    emit = sim.hub.emit_json

    def noting(event: str, data: dict[str, Any], sid: str | None) -> None:
        if event == "progress":
            emitted.append((data["prompt_id"], int(data["value"]), time.monotonic()))
        emit(event, data, sid)

    sim.hub.emit_json = noting


async def _lifespan(sims: list[Any], receive: Callable[[], Awaitable[Any]],
                    send: Callable[[Any], Awaitable[None]]) -> None:  # fmt: skip
    await receive()
    for sim in sims:
        await sim.start()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    for sim in sims:
        await sim.aclose()
    await send({"type": "lifespan.shutdown.complete"})


async def _json(send: Callable[[Any], Awaitable[None]], value: object) -> None:
    body = json.dumps(value).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


# ---- the subscribers ---------------------------------------------------------------------------


@dataclass
class Follower:
    """One user: their socket, their job, what arrived and when."""

    token: str
    job_id: str | None = None
    received: list[tuple[int, float]] = field(default_factory=list)  # (step, monotonic)
    running: asyncio.Event = field(default_factory=asyncio.Event)
    ended: str | None = None
    # every other event, for the report on a job that never ran: (monotonic, type, status)
    history: list[tuple[float, str, str]] = field(default_factory=list)


async def follow(base_url: str, follower: Follower, connecting: asyncio.Semaphore,
                 submitted: asyncio.Event, stop: asyncio.Event, kind: str) -> None:  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        async with connecting:  # a burst of 1 000 handshakes at once is not the subject
            sock = await stack.enter_async_context(Socket.open(base_url, follower.token))
        await submitted.wait()
        await sock.subscribe(FOLLOW[kind], {"id": follower.job_id} if kind == "job" else {})
        reader = asyncio.create_task(_read(sock, follower))
        await stop.wait()
        reader.cancel()


async def _read(sock: Socket, follower: Follower) -> None:
    async for message in sock.messages():
        now = time.monotonic()
        payload = message.get("payload") or {}
        data = (payload.get("data") or {}) if isinstance(payload, dict) else {}
        event = data.get("jobEvents") or data.get("myJobEvents")
        if message.get("type") in ("error", "complete") or payload.get("errors"):
            follower.ended = json.dumps(message)[:300]
            return
        if event and event["__typename"] == "JobProgress":
            follower.received.append((int(event["step"]), now))
            follower.running.set()
        elif event:
            follower.history.append((now, event["__typename"], event["status"]))


async def submit_all(url: str, followers: list[Follower], clients: int, steps: int) -> None:
    """Each user submits one job (through `clients` parallel connections)."""
    pending = list(followers)

    async def worker() -> None:
        while pending:
            follower = pending.pop()
            http = RawHttp(url, {"Authorization": f"Bearer {follower.token}"})
            body = {"query": SUBMIT, "variables": {"i": {
                "prompt": "a lighthouse", "steps": steps, "width": 64, "height": 64}}}  # fmt: skip
            status, answer = await http.post_json("/graphql", json.dumps(body).encode())
            await http.aclose()
            data = json.loads(answer)
            if status != 200 or data.get("errors"):
                raise RuntimeError(f"submit failed: {answer[:300]!r}")
            follower.job_id = data["data"]["submitText2Image"]["id"]

    await asyncio.gather(*(worker() for _ in range(clients)))


# ---- the run -------------------------------------------------------------------------------------


@dataclass
class Result:
    users: int
    running: int
    latencies_ms: list[float]
    deliveries_per_s: float
    cores: dict[str, float]  # process → cores used in the window
    rss_mb: float
    peak_mb: float
    lost: int


async def until_backends_healthy(url: str, token: str, count: int, limit_s: float) -> None:
    """Start-up only: the worker has connected to every simulated backend."""
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while time.monotonic() < deadline:
            answer = await http.post("/graphql", json={"query": BACKENDS},
                                     headers={"authorization": f"Bearer {token}"})  # fmt: skip
            data = answer.json().get("data") or {}
            if sum(1 for b in data.get("backends", []) if b["healthy"]) >= count:
                return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the worker did not reach {count} healthy backends in {limit_s:.0f} s")


async def measure(args: argparse.Namespace, pids: dict[str, int], followers: list[Follower],
                  sims_url: str) -> Result:  # fmt: skip
    try:
        async with asyncio.timeout(args.ramp_limit):
            await asyncio.gather(*(f.running.wait() for f in followers))
    except TimeoutError:
        pass  # measure those that run; the table says how many
    clocks = {name: ProcessClock(pid) for name, pid in pids.items()}
    for each in clocks.values():
        each.start()
    profile = _profile(pids, args)
    start = time.monotonic()
    await asyncio.sleep(args.window)
    end = time.monotonic()
    if profile is not None:
        await profile
    await asyncio.sleep(GRACE_S)  # what was sent in the window and is still on its way
    cores = {name: each.cores_used() for name, each in clocks.items()}
    async with httpx.AsyncClient(timeout=60) as http:
        emitted = (await http.get(f"{sims_url}/records")).json()
    return _result(args, followers, emitted, (start, end), cores, clocks["API"])


def _profile(pids: dict[str, int], args: argparse.Namespace) -> asyncio.Task[None] | None:
    """py-spy the API and the worker during the window (collapsed stacks, DIR/<name>.txt)."""
    if args.profile is None:
        return None
    spy = shutil.which("py-spy")
    if spy is None:
        print("--profile: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return None
    Path(args.profile).mkdir(parents=True, exist_ok=True)

    async def record(name: str) -> None:
        out = Path(args.profile) / f"{name.lower()}.txt"
        proc = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(pids[name]), "--duration", str(int(args.window)),
            "--rate", "100", "--format", "raw", "--nonblocking", "-o", str(out),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()
        print(f"profile of the {name}: {out}", file=sys.stderr)

    async def both() -> None:
        await asyncio.gather(record("API"), record("worker"))

    return asyncio.create_task(both())


def _result(args: argparse.Namespace, followers: list[Follower], emitted: list[list[Any]],
            window: tuple[float, float], cores: dict[str, float],
            clock: ProcessClock) -> Result:  # fmt: skip
    start, end = window
    sent = {(p, s): t for p, s, t in emitted if start <= t < end}
    latencies, lost = [], 0
    received = {(f.job_id, step): t for f in followers for step, t in f.received}
    for key, t_sent in sent.items():
        t_got = received.get(key)
        if t_got is None:
            lost += 1
        else:
            latencies.append((t_got - t_sent) * 1000)
    running = sum(1 for f in followers if f.running.is_set())
    return Result(len(followers), running, latencies, len(latencies) / (end - start), cores,
                  clock.memory_mb("VmRSS"), clock.memory_mb("VmHWM"), lost)  # fmt: skip


def report(args: argparse.Namespace, result: Result, label: str) -> str:
    lat = result.latencies_ms
    rows = [[f"{result.running} of {result.users}", f"{result.deliveries_per_s:,.0f}",
             percentile(lat, 50), percentile(lat, 99), max(lat) if lat else float("nan"),
             result.lost, f"{result.cores['API']:.2f}", _per_delivery_ms(result),
             f"{result.rss_mb:.0f}",
             f"{result.peak_mb:.0f}",
             " ".join(f"{k} {v:.2f}" for k, v in result.cores.items() if k != "API")]]  # fmt: skip
    title = (f"fanout: one API process, {args.rate:g} progress events/s per job, "
             f"{args.window:.0f} s window, {label}, {STREAM[args.subscription]}; "
             f"targets p99 ≤ 50 ms, RSS ≤ 250 MB\n"
             f"machine: {machine()}")  # fmt: skip
    headers = ["jobs running", "deliveries/s", "p50 ms", "p99 ms", "max ms",
               "not delivered", "API cores", "API ms/delivery", "API RSS MB", "API peak MB",
               "other processes (cores)"]  # fmt: skip
    return table(title, headers, rows)


def _per_delivery_ms(result: Result) -> str:
    """The API's CPU per delivery: the figure that carries over to a machine of its own."""
    if not result.deliveries_per_s:
        return "n/a"
    return f"{result.cores['API'] * 1000 / result.deliveries_per_s:.3f}"


async def main(args: argparse.Namespace) -> None:
    redis = redis_url(required=True)
    steps = min(MAX_STEPS, int(args.rate * (args.ramp_limit + args.window + 10)))
    port = free_port()
    prefix = f"fan{port}"
    try:
        with tempfile.TemporaryDirectory(prefix="sg-bench-fanout-") as tmp:
            async with (
                Processes(Path(tmp)) as procs,
                fresh_database(args.database_url, Path(tmp)) as db,
            ):
                tokens = await prepare_database(db, args.users, points=10**6)
                sims_port = free_port()
                sims = await procs.start("sims", [sys.executable, __file__, "--serve-sims",
                                                  str(sims_port), str(args.users),
                                                  str(1 / args.rate)], stargraph_env())  # fmt: skip
                sims_url = f"http://127.0.0.1:{sims_port}"
                await wait_until_up(f"{sims_url}/records", sims)
                backends = [f"{sims_url}/s/{i}" for i in range(args.users)]
                env = stargraph_env(
                    database_url=db, redis_url=redis, redis_prefix=prefix,
                    comfyui_urls=backends, comfyui_max_inflight=1, default_model=CHECKPOINT,
                    models=[CHECKPOINT], submits_per_minute=10**6, graphiql="false",
                    max_subscriptions_per_user=5, storage_dir=Path(tmp) / "images",
                )  # fmt: skip
                worker = await procs.stargraph("worker", ["worker"], env)
                api = await procs.stargraph("api", ["api", "--port", str(port)], env)
                url = f"http://127.0.0.1:{port}"
                await wait_until_up(f"{url}/healthz", api, limit_s=900)
                await until_backends_healthy(url, tokens[-1], args.users, 180)
                assert worker.proc.returncode is None, worker.tail()
                pids = {"API": api.pid, "worker": worker.pid, "simulators": sims.pid,
                        "load": os.getpid()}  # fmt: skip
                result = await _drive(args, url, pids, tokens[:-1], steps, sims_url)
                if args.keep_logs:
                    for proc in (api, worker, sims):
                        (Path(args.keep_logs) / f"{proc.name}.log").write_bytes(
                            proc.log.read_bytes()
                        )
                if result.running < result.users:
                    logs = f"API log:\n{api.tail(40)}\nworker log:\n{worker.tail(20)}"
                    print("\n".join(line[:300] for line in logs.splitlines()), file=sys.stderr)
    finally:
        await forget_prefix(redis, prefix)  # its processes are stopped by now
    print(report(args, result, database_label(db)))


async def _drive(args: argparse.Namespace, url: str, pids: dict[str, int], tokens: list[str],
                 steps: int, sims_url: str) -> Result:  # fmt: skip
    start = time.monotonic()
    followers = [Follower(t) for t in tokens]
    connected, submitted, stop = asyncio.Semaphore(50), asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(follow(url, f, connected, submitted, stop, args.subscription))
             for f in followers]  # fmt: skip
    await submit_all(url, followers, 16, steps)
    submitted.set()
    try:
        return await measure(args, pids, followers, sims_url)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        ended = [f.ended for f in followers if f.ended]
        if ended:
            print(f"{len(ended)} subscriptions ended early, e.g. {ended[0]}", file=sys.stderr)
        for f in followers:
            if not f.running.is_set():
                seen = ", ".join(f"{t - start:+.2f} s {kind} {status}"
                                 for t, kind, status in f.history)  # fmt: skip
                print(f"job {f.job_id} never ran; its events: {seen or 'none'}", file=sys.stderr)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2.0, help="progress events/s per job")
    parser.add_argument("--window", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--ramp-limit", type=float, default=30.0,
                        help="seconds to wait for every job to run before measuring")  # fmt: skip
    parser.add_argument("--database-url", default="sqlite", metavar="SERVER_URL",
                        help="a database server, e.g. postgres://postgres@127.0.0.1:5432 "
                        "(default: SQLite)")  # fmt: skip
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the processes' logs there")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy the API and the worker (pip install py-spy)")  # fmt: skip
    parser.add_argument("--subscription", choices=["job", "user"], default="job",
                        help="jobEvents(jobId) (default) or myJobEvents")  # fmt: skip
    parser.add_argument("--serve-sims", nargs=3, metavar=("PORT", "COUNT", "STEP_TIME"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.keep_logs:
        Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve_sims:
        port, count, step = arguments.serve_sims
        serve_sims(int(port), int(count), float(step))
    else:
        freeze_startup_heap()
        run(main(arguments))
