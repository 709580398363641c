"""Fault drill: SIGTERM during load loses nothing and leaves no job stuck.

A worker process stopped with SIGTERM while jobs run exits cleanly and leaves a state with
nothing half-done: every waiting job is back in the Redis queue (no lease left behind), and
every job the table says is inside a ComfyUI really was sent there. A new worker then finishes
every job, completing the ones ComfyUI ran meanwhile from its history instead of sending them
again. The same holds for `stargraph serve` (API and worker in one process) stopped while
clients are submitting over HTTP: every accepted submission ends terminal and correctly charged.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from stargraph.domain.jobs import IN_ENGINE, JobStatus
from stargraph.domain.types import JobId
from stargraph.store.models import JobRow
from tests.drills.checks import assert_settled_and_stored
from tests.drills.load import submit_jobs, terminal_count, wait_terminal
from tests.drills.processes import Process, StackEnv, serve_process, worker_process
from tests.drills.redis_server import RedisServer
from tests.e2e.harness import free_port
from tests.engine.factory import CHECKPOINT, PRICE
from tests.engine.harness import FAST, Rig, engine_rig

SIM = replace(FAST, step_time=0.01)  # 5 steps: about 50 ms a job, so some are always running
BACKENDS = 3


def _env(rig: Rig, db: str, redis_url: str, storage: Path, **extra: str) -> StackEnv:
    return StackEnv(
        database_url=db,
        redis_url=redis_url,
        prefix=rig.prefix,
        backends=rig.backends,
        storage=storage,
        extra={"STARGRAPH_LEASE_S": "1", **extra},
    )


async def _assert_nothing_half_done(rig: Rig, redis: Redis, job_ids: Sequence[str]) -> Counter[str]:
    """The state a clean stop leaves: waiting jobs in the queue, in-engine jobs in an engine."""
    rows = await JobRow.filter(id__in=list(job_ids))
    states = Counter(r.status for r in rows)
    queued = [JobId(r.id) for r in rows if r.status == JobStatus.QUEUED.value]
    missing = [j for j, p in (await rig.queue.positions(queued)).items() if p is None]
    assert not missing, f"QUEUED jobs not waiting in the queue after the stop: {missing[:10]}"
    assert await redis.zcard(rig.queue.keys.leases) == 0, "a lease outlived the worker"
    sent = {(sim.url, r.prompt_id) for sim in rig.sims for r in sim.records}
    inside = [(r.backend, r.id) for r in rows if r.status in {s.value for s in IN_ENGINE}]
    unsent = [job for job in inside if job not in sent]
    assert not unsent, f"jobs marked as inside a backend that never got them: {unsent}"
    return states


def _posted_twice(rig: Rig) -> dict[str, int]:
    posted = Counter(r.prompt_id for sim in rig.sims for r in sim.records)
    return {job: n for job, n in posted.items() if n > 1}


@pytest.mark.slow
async def test_sigterm_to_the_worker_under_load_loses_nothing(
    drill_db: str,
    private_redis: RedisServer,
    private_redis_client: Redis,
    tmp_path: Path,
) -> None:
    storage, prefix = tmp_path / "images", f"g{uuid.uuid4().hex[:12]}"
    async with engine_rig(
        private_redis_client, prefix, storage, backends=BACKENDS, sim=SIM, start=False
    ) as rig:
        job_ids, _ = await submit_jobs(rig, users=6, jobs=120, steps=5)
        env = _env(rig, drill_db, private_redis.url, storage)
        worker = worker_process(env, tmp_path / "worker.log")
        try:
            for stop_after in (20, 60):
                ended_before = await terminal_count(job_ids)
                worker.start()
                # stop it only once it is at work (it ended a job): a SIGTERM during the
                # interpreter's start-up, before any handler exists, tests nothing of ours
                at_least = max(stop_after, ended_before + 1)
                await wait_terminal(job_ids, at_least=at_least, alive=[worker], report=worker.tail)
                began = time.monotonic()
                code = await worker.terminate(within_s=30)
                took = time.monotonic() - began
                assert code == 0, f"the worker did not stop cleanly:\n{worker.tail()}"
                states = await _assert_nothing_half_done(rig, private_redis_client, job_ids)
                print(f"SIGTERM after {stop_after}+ ended: stopped in {took:.2f} s, {dict(states)}")
            worker.start()
            await wait_terminal(job_ids, alive=[worker], report=worker.tail)
            assert await worker.terminate(within_s=30) == 0, worker.tail()
        finally:
            await worker.stop_quietly()
        assert not _posted_twice(rig), "jobs sent again after a graceful stop"

    expected = Counter({JobStatus.SUCCEEDED.value: len(job_ids)})
    await assert_settled_and_stored(
        job_ids, files=rig.files, price=PRICE, expected=expected, context=worker.tail()
    )


# ---- stargraph serve ----------------------------------------------------------------------

SUBMIT = """mutation($input: Text2ImageInput!) { submitText2Image(input: $input) { id } }"""
# uvicorn re-raises a SIGTERM it handled once its graceful shutdown is complete
CLEAN_EXIT = {0, -signal.SIGTERM}
REGISTER = """mutation($u: String!, $p: String!) {
  register(username: $u, password: $p) { token } }"""


def _serve_registered() -> bool:
    from stargraph.cli import COMMANDS

    return any(command.words == ("serve",) for command in COMMANDS)


async def _until_up(http: httpx.AsyncClient, serve: Process) -> None:
    for _ in range(600):
        assert serve.alive, f"serve exited during start-up:\n{serve.tail()}"
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"serve did not come up:\n{serve.tail()}")


async def _submitter(
    http: httpx.AsyncClient,
    token: str,
    stop: asyncio.Event,
    accepted: list[str],
    seen: Counter[str],
) -> None:
    """Submit one job after another until the server goes away (or `stop`)."""
    headers = {"Authorization": f"Bearer {token}"}
    variables = {"input": {"prompt": "a harbour at night", "width": 64, "height": 64,
                           "steps": 5, "model": CHECKPOINT}}  # fmt: skip
    while not stop.is_set():
        try:
            response = await http.post(
                "/graphql", json={"query": SUBMIT, "variables": variables}, headers=headers
            )
        except httpx.TransportError:
            seen["transport error"] += 1
            return
        seen[f"HTTP {response.status_code}"] += 1
        body = response.json() if response.status_code == 200 else {}
        if body.get("data") and body["data"].get("submitText2Image"):
            accepted.append(body["data"]["submitText2Image"]["id"])
        elif body.get("errors"):
            seen[str(body["errors"][0].get("extensions", {}).get("code"))] += 1


@pytest.mark.slow
async def test_sigterm_to_serve_during_submissions_loses_nothing(
    drill_db: str,
    private_redis: RedisServer,
    private_redis_client: Redis,
    tmp_path: Path,
) -> None:
    if not _serve_registered():
        pytest.skip("`stargraph serve` is not a registered command yet")
    storage, port = tmp_path / "images", free_port()
    limits = {"STARGRAPH_SIGNUP_POINTS": "100000", "STARGRAPH_SUBMITS_PER_MINUTE": "100000",
              "STARGRAPH_MAX_QUEUED_PER_USER": "100000", "STARGRAPH_MODELS": CHECKPOINT,
              "STARGRAPH_OLLAMA_URL": f"http://127.0.0.1:{free_port()}"}  # fmt: skip
    prefix = f"s{uuid.uuid4().hex[:12]}"
    async with (
        engine_rig(private_redis_client, prefix, storage, backends=BACKENDS, sim=SIM,
                   start=False) as rig,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):  # fmt: skip
        env = _env(rig, drill_db, private_redis.url, storage, **limits)
        serve = serve_process(env, tmp_path / "serve.log", port)
        accepted: list[str] = []
        seen: Counter[str] = Counter()
        try:
            serve.start()
            await _until_up(http, serve)
            tokens = []
            for i in range(5):
                reply = await http.post("/graphql", json={"query": REGISTER, "variables": {
                    "u": f"sigterm{i}", "p": "correct horse 1"}})  # fmt: skip
                tokens.append(reply.json()["data"]["register"]["token"])
            stop = asyncio.Event()
            clients = [
                asyncio.create_task(_submitter(http, token, stop, accepted, seen))
                for token in tokens
            ]
            while len(accepted) < 60:
                assert serve.alive and not all(c.done() for c in clients), serve.tail()
                await asyncio.sleep(0.02)
            began = time.monotonic()
            code = await serve.terminate(within_s=60)
            took = time.monotonic() - began
            stop.set()
            await asyncio.gather(*clients)
            assert code in CLEAN_EXIT, f"serve did not stop cleanly ({code}):\n{serve.tail()}"
            all_jobs = [r.id for r in await JobRow.all()]  # answered or not
            assert set(accepted) <= set(all_jobs)
            await _assert_nothing_half_done(rig, private_redis_client, all_jobs)
            print(f"serve stopped in {took:.2f} s; accepted {len(accepted)}, "
                  f"in the table {len(all_jobs)}, answers {dict(seen)}")  # fmt: skip
            serve.start()
            await _until_up(http, serve)
            await wait_terminal(all_jobs, alive=[serve], report=serve.tail)
            assert await serve.terminate(within_s=60) in CLEAN_EXIT, serve.tail()
        finally:
            await serve.stop_quietly()
        assert not _posted_twice(rig), "jobs sent again after a graceful stop"

    assert not any(k.startswith("HTTP 5") for k in seen), dict(seen)
    expected = Counter({JobStatus.SUCCEEDED.value: len(all_jobs)})
    await assert_settled_and_stored(
        all_jobs, files=rig.files, price=PRICE, expected=expected, context=serve.tail()
    )
    assert await terminal_count(all_jobs) == len(all_jobs)
