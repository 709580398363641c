"""What StarGraph adds to each job: submit → image in hand, minus the engine's own run time,
beside the same jobs posted straight to the simulated ComfyUI.

    python bench/overhead.py                         # 30 jobs of 10 steps × 0.05 s, SQLite
    python bench/overhead.py --jobs 50 --database-url postgres://postgres@127.0.0.1:5432

One simulated ComfyUI in its own process (`stargraph comfyui-sim`, no previews). Jobs run one
at a time, so nothing waits in a queue and the difference is pure overhead:

- StarGraph (`stargraph serve`: API and worker in one process): the client is subscribed to
  `myJobEvents`, sends `submitText2Image`, waits for `JobSucceeded`, then GETs the image link.
- direct: the client holds a ComfyUI WebSocket, POSTs the same workflow to `/prompt`, waits
  for the end of execution (`executing` with node null), reads `/history/{id}` and GETs
  `/view`: what a bare ComfyUI client must do to hold the image.

Engine time per job comes from the simulator's own records (start and end of execution, on
the machine's monotonic clock, which every process shares), so overhead = (client's total) −
(engine time). Also shown for StarGraph: submit → the POST reaching ComfyUI (dispatch), and
engine end → image in hand (results, storage, settlement, event, download).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CHECKPOINT,
    ROOT,
    Processes,
    Socket,
    database_label,
    forget_prefix,
    free_port,
    fresh_database,
    gql,
    machine,
    percentile,
    prepare_database,
    redis_url,
    run,
    stargraph_env,
    table,
    wait_until_up,
)

from stargraph.domain.jobs import JobParams
from stargraph.domain.types import Priority
from stargraph.domain.workflows import WorkflowCatalog

SUBMIT = "mutation($i: Text2ImageInput!) { submitText2Image(input: $i) { id } }"
EVENTS = "subscription { myJobEvents { __typename jobId ... on JobSucceeded { images { url } } } }"


@dataclass
class Job:
    prompt_id: str
    sent_at: float
    done_at: float = 0.0


@dataclass
class Figures:
    name: str
    jobs: list[Job] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # the simulator's

    def engine_s(self, job: Job) -> float:
        r = self.records[job.prompt_id]
        return float(r["finished_at"] - r["started_at"])

    def total_ms(self) -> list[float]:
        return [(j.done_at - j.sent_at) * 1000 for j in self.jobs]

    def overhead_ms(self) -> list[float]:
        return [(j.done_at - j.sent_at - self.engine_s(j)) * 1000 for j in self.jobs]

    def to_post_ms(self) -> list[float]:
        return [(self.records[j.prompt_id]["posted_at"] - j.sent_at) * 1000 for j in self.jobs]

    def after_engine_ms(self) -> list[float]:
        return [(j.done_at - self.records[j.prompt_id]["finished_at"]) * 1000 for j in self.jobs]


def _params(args: argparse.Namespace, n: int) -> dict[str, Any]:
    return {"prompt": f"a lighthouse, take {n}", "steps": args.steps, "width": 64,
            "height": 64, "seed": n + 1, "model": CHECKPOINT}  # fmt: skip


async def _records(http: httpx.AsyncClient, sim_url: str) -> dict[str, dict[str, Any]]:
    answer = (await http.get(f"{sim_url}/sim/records")).json()
    return {r["prompt_id"]: r for r in answer["records"]}


# ---- StarGraph ---------------------------------------------------------------------------------


async def _one_stargraph(http: httpx.AsyncClient, events: Socket, token: str,
                         args: argparse.Namespace, n: int) -> Job:  # fmt: skip
    sent = time.monotonic()
    data = await gql(http, SUBMIT, {"i": _params(args, n)}, token)
    job = Job(data["submitText2Image"]["id"], sent)
    async for message in events.messages():
        event = (message.get("payload") or {}).get("data", {}).get("myJobEvents") or {}
        if event.get("jobId") == job.prompt_id and event["__typename"] == "JobSucceeded":
            image = await http.get(event["images"][0]["url"])
            assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
            job.done_at = time.monotonic()
            return job
        if event.get("__typename") in ("JobFailed", "JobCancelled"):
            raise RuntimeError(f"job ended badly: {event}")
    raise RuntimeError("the event stream ended")


async def run_stargraph(procs: Processes, args: argparse.Namespace, sim_url: str,
                        spec: str) -> Figures:  # fmt: skip
    async with fresh_database(spec, procs.workdir) as db:
        token = (await prepare_database(db, 1, points=10**6))[0]
        port = free_port()
        shared_redis = redis_url(required=False)
        env = stargraph_env(
            database_url=db, redis_url=shared_redis, redis_prefix=f"ovh{port}",
            comfyui_urls=[sim_url], default_model=CHECKPOINT, models=[CHECKPOINT],
            storage_dir=procs.workdir / f"images-{port}", graphiql="false",
            submits_per_minute=10**6,
        )  # fmt: skip
        serve = await procs.stargraph("serve", ["serve", "--port", str(port)], env)
        url = f"http://127.0.0.1:{port}"
        await wait_until_up(f"{url}/readyz", serve)
        figures = Figures(f"StarGraph, {database_label(db)}")
        async with httpx.AsyncClient(base_url=url, timeout=60) as http, \
                Socket.open(url, token) as events:  # fmt: skip
            await events.subscribe(EVENTS)
            for n in range(args.warmup + args.jobs):
                job = await _one_stargraph(http, events, token, args, n)
                if n >= args.warmup:
                    figures.jobs.append(job)
            figures.records = await _records(http, sim_url)
        await procs.stop(serve)
        if shared_redis is not None:
            await forget_prefix(shared_redis, f"ovh{port}")
        return figures


# ---- straight to ComfyUI ---------------------------------------------------------------------


def _graph(args: argparse.Namespace, prompt_id: str, n: int) -> dict[str, Any]:
    p = _params(args, n)
    params = JobParams(
        prompt=p["prompt"], negative_prompt="", count=1, width=64, height=64,
        steps=args.steps, cfg=8.0, sampler="euler", scheduler="normal", model=CHECKPOINT,
        seed=p["seed"], workflow="t2i", priority=Priority.NORMAL,
    )  # fmt: skip
    catalog = WorkflowCatalog.load(ROOT / "workflows")
    return catalog.render("t2i", prompt_id, params, p["prompt"], "")  # type: ignore[arg-type]


async def _ended(ws: Any, prompt_id: str) -> None:
    async for raw in ws:
        if isinstance(raw, bytes):
            continue
        message = json.loads(raw)
        data = message.get("data", {})
        if message.get("type") == "executing" and data.get("node") is None \
                and data.get("prompt_id") == prompt_id:  # fmt: skip
            return
        if message.get("type") == "execution_error":
            raise RuntimeError(f"ComfyUI error: {data}")


async def _one_direct(http: httpx.AsyncClient, ws: Any, client_id: str,
                      args: argparse.Namespace, n: int) -> Job:  # fmt: skip
    prompt_id = str(uuid.uuid4())
    graph = _graph(args, prompt_id, n)
    job = Job(prompt_id, time.monotonic())
    posted = await http.post("/prompt", json={"prompt": graph, "client_id": client_id,
                                              "prompt_id": prompt_id})  # fmt: skip
    posted.raise_for_status()
    await _ended(ws, prompt_id)
    history = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
    image = next(i for out in history["outputs"].values() for i in out.get("images", []))
    where = {"filename": image["filename"], "subfolder": image["subfolder"], "type": "output"}
    view = await http.get("/view", params=where)
    assert view.status_code == 200 and view.content[:4] == b"\x89PNG"
    job.done_at = time.monotonic()
    return job


async def run_direct(args: argparse.Namespace, sim_url: str) -> Figures:
    figures = Figures("direct to ComfyUI")
    client_id = uuid.uuid4().hex
    ws_url = sim_url.replace("http://", "ws://") + f"/ws?clientId={client_id}"
    async with httpx.AsyncClient(base_url=sim_url, timeout=60) as http, \
            connect(ws_url, max_size=None) as ws:  # fmt: skip
        for n in range(args.warmup + args.jobs):
            job = await _one_direct(http, ws, client_id, args, 10_000 + n)
            if n >= args.warmup:
                figures.jobs.append(job)
        figures.records = await _records(http, sim_url)
    return figures


# ---- the run -------------------------------------------------------------------------------------


def report(args: argparse.Namespace, runs: list[Figures]) -> str:
    rows = []
    for f in runs:
        engine = [f.engine_s(j) * 1000 for j in f.jobs]
        rows.append([
            f.name, len(f.jobs), percentile(f.total_ms(), 50), percentile(engine, 50),
            percentile(f.overhead_ms(), 50), percentile(f.overhead_ms(), 99),
            percentile(f.to_post_ms(), 50), percentile(f.after_engine_ms(), 50),
        ])  # fmt: skip
    title = (f"overhead: jobs one at a time, {args.steps} steps × {args.step_time} s, 64×64, "
             f"1 image; times in ms, from the client's send to the PNG in its hands\n"
             f"machine: {machine()}")  # fmt: skip
    headers = ["path", "jobs", "total p50", "engine p50", "overhead p50", "overhead p99",
               "send→POST p50", "engine end→PNG p50"]  # fmt: skip
    return table(title, headers, rows)


async def main(args: argparse.Namespace) -> None:
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="sg-bench-overhead-") as tmp:
        async with Processes(Path(tmp)) as procs:
            port = free_port()
            sim = await procs.stargraph("comfyui-sim", [
                "comfyui-sim", "--port", str(port), "--step-time", str(args.step_time),
                "--checkpoints", CHECKPOINT, "--no-previews",
            ], stargraph_env())  # fmt: skip
            sim_url = f"http://127.0.0.1:{port}"
            await wait_until_up(f"{sim_url}/prompt", sim)
            runs = [await run_direct(args, sim_url)]
            runs += [await run_stargraph(procs, args, sim_url, spec) for spec in args.database]
    print(report(args, runs))
    print(f"({(datetime.now(UTC) - started).total_seconds():.0f} s)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3, help="jobs run first, not counted")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--step-time", type=float, default=0.05)
    parser.add_argument("--database-url", action="append", default=[], metavar="SERVER_URL",
                        help="also run on this database server, e.g. postgres://"
                        "postgres@127.0.0.1:5432 (repeatable; SQLite always runs)")  # fmt: skip
    args = parser.parse_args()
    args.database = ["sqlite", *args.database_url]
    return args


if __name__ == "__main__":
    run(main(parse_args()))
