"""Two API processes and one worker process on one Redis and one shared SQLite file.

A subscriber on the second API process sees every event of a job that the worker process
dispatched and the first API process accepted; a client that disconnects mid-job and resumes
with its last cursor (on the other API process) misses nothing; SIGTERM stops every process
cleanly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from stargraph.comfy.sim_config import RECORDED_CHECKPOINT, SimulatorConfig
from stargraph.comfy.simulator import running_simulator
from stargraph.store.db import migrate
from tests.conftest import REDIS_URL, need_service
from tests.e2e.harness import (
    Client,
    closed_port_url,
    free_port,
    log_tail,
    subscriptions,
    until_up,
)
from tests.redis_cleanup import forget_prefix

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
STEPS = 12
EVENTS = """subscription($after: String) { myJobEvents(after: $after) {
  __typename jobId status cursor
  ... on JobProgress { step }
  ... on JobSucceeded { images { url } }
} }"""
SUBMIT = "mutation($i: Text2ImageInput!) { submitText2Image(input: $i) { id } }"


@contextmanager
def _process(
    args: list[str], env: dict[str, str], log: Path, stopped: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python -m args`; on exit, SIGTERM it and expect a clean stop (`stopped` logged).
    uvicorn re-raises the signal after its graceful shutdown, so -SIGTERM is a clean exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise AssertionError(f"{args} ignored SIGTERM; log: {log.read_text()}") from None
            text = log_tail(log)
            assert code in (0, -signal.SIGTERM), f"{args} exited {code}; log:\n{text}"
            assert stopped in text, f"{args} did not stop gracefully; log:\n{text}"


@asynccontextmanager
async def _deployment(tmp_path: Path) -> AsyncIterator[tuple[str, str, str]]:
    """A simulator (here), a worker and two API processes; yields the two API URLs and the
    worker's own metrics URL."""
    need_service("Redis", "127.0.0.1", 6379)
    database = f"sqlite://{tmp_path / 'shared.sqlite3'}"
    await migrate(database)
    prefix = f"mp{uuid.uuid4().hex[:10]}"
    try:
        async with running_simulator(SimulatorConfig(step_time=0.03)) as sim:
            env = {
                **os.environ,
                "STARGRAPH_DATABASE_URL": database,
                "STARGRAPH_REDIS_URL": REDIS_URL,
                "STARGRAPH_REDIS_PREFIX": prefix,
                "STARGRAPH_COMFYUI_URLS": sim.url,
                "STARGRAPH_STORAGE_DIR": str(tmp_path / "images"),
                "STARGRAPH_DEFAULT_MODEL": RECORDED_CHECKPOINT,
                "STARGRAPH_OLLAMA_URL": closed_port_url(),
                "STARGRAPH_LOG_LEVEL": "INFO",
            }
            ports = [free_port(), free_port(), free_port()]
            env["STARGRAPH_WORKER_METRICS_PORT"] = str(ports[2])
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            logs = [tmp_path / n for n in ("worker.log", "api1.log", "api2.log")]
            api = [["stargraph", "api", "--port", str(p)] for p in ports[:2]]
            with (
                _process(["stargraph.worker"], env, logs[0], "worker stopped") as worker,
                _process(api[0], env, logs[1], "Application shutdown complete") as api1,
                _process(api[1], env, logs[2], "Application shutdown complete") as api2,
            ):
                await until_up(urls[0], api1, logs[1])
                await until_up(urls[1], api2, logs[2])
                await until_up(urls[2], worker, logs[0])
                yield urls[0], urls[1], urls[2] + "/metrics"
    finally:  # after every process has stopped
        await forget_prefix(REDIS_URL, prefix)


def _real(events: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """Stored events only: a re-sent JobQueued (new position) repeats the last cursor."""
    seen, out = set(), []
    for e in events:
        if e["__typename"] == "JobQueued" and e["cursor"] in seen:
            continue
        seen.add(e["cursor"])
        out.append((e["cursor"], e["__typename"], e.get("step")))
    return out


async def _collect(
    url: str,
    token: str,
    job_id: str,
    sink: list[dict[str, Any]],
    after: str | None = "0-0",
    stop_after_step: int | None = None,
    passed_step: tuple[int, asyncio.Event] | None = None,
) -> None:
    """Append the caller's events to `sink` until `job_id` succeeds (or `stop_after_step`);
    `passed_step` = (n, event): set the event once a step past n arrives."""
    async with subscriptions(url, token) as ws:
        op = await ws.subscribe(EVENTS, {"after": after})
        async for data in ws.events(op):
            event = data["myJobEvents"]
            sink.append(event)
            if passed_step and event.get("step", 0) > passed_step[0]:
                passed_step[1].set()
            if event["jobId"] == job_id and event["status"] == "SUCCEEDED":
                return
            if stop_after_step is not None and event.get("step") == stop_after_step:
                return  # drop the connection mid-job


async def test_events_cross_processes_and_resume_without_loss(tmp_path: Path) -> None:
    async with (
        _deployment(tmp_path) as (api1, api2, worker_metrics),
        httpx.AsyncClient(base_url=api1, timeout=30) as http,
    ):
        user = await Client(http).register("wanderer")  # on API 1

        # A subscriber on API 2 follows a job accepted by API 1 and run by the worker.
        job = (await user.data(SUBMIT, {"i": {"prompt": "a lighthouse", "steps": STEPS,
                                               "width": 64, "height": 64}}))  # fmt: skip
        job_id = job["submitText2Image"]["id"]
        seen: list[dict[str, Any]] = []
        await _collect(api2, user.token, job_id, seen)
        kinds = [t for _, t, _ in _real(seen)]
        assert kinds[:3] == ["JobQueued", "JobDispatched", "JobStarted"], kinds
        assert [s for _, t, s in _real(seen) if t == "JobProgress"] == list(range(1, STEPS + 1))
        assert kinds[-1] == "JobSucceeded"
        url = seen[-1]["images"][0]["url"]  # signed by API 2, opened on API 1
        assert (await http.get(url)).status_code == 200

        # A reference subscriber stays connected (API 2); another drops mid-job and resumes
        # with its last cursor on API 1.
        second = {"prompt": "a second lighthouse", "steps": STEPS, "width": 64, "height": 64}
        job_id = (await user.data(SUBMIT, {"i": second}))["submitText2Image"]["id"]
        start, half = seen[-1]["cursor"], STEPS // 2
        reference: list[dict[str, Any]] = []
        resumed: list[dict[str, Any]] = []
        went_on = asyncio.Event()
        following = asyncio.create_task(
            _collect(
                api2, user.token, job_id, reference, after=start, passed_step=(half + 2, went_on)
            )
        )
        await _collect(api2, user.token, job_id, resumed, after=start, stop_after_step=half)
        assert resumed[-1].get("step") == half
        await went_on.wait()  # events go by while this client is away
        await _collect(api1, user.token, job_id, resumed, after=resumed[-1]["cursor"])
        await following
        assert _real(resumed) == _real(reference)
        assert _real(reference)[-1][1] == "JobSucceeded"

        # The worker process exports its own metrics: what only its pool knows included.
        scraped = (await http.get(worker_metrics)).text
        assert 'stargraph_jobs{status="succeeded"} 2.0' in scraped
        backend_lines = [line for line in scraped.splitlines() if "backend=" in line]
        assert any(line.startswith("stargraph_backend_healthy{") and line.endswith(" 1.0")
                   for line in backend_lines), backend_lines  # fmt: skip
        assert any(line.startswith("stargraph_backend_mean_run_seconds{")
                   for line in backend_lines), backend_lines  # fmt: skip
