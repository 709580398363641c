"""A StarGraph with history, for hostile requests: two users with finished jobs, images on
disk and waiting jobs, an admin, and a judge that checks every answer and what it changed.

The world is built in two runs over one database, Redis prefix and image folder: first with
the worker and a simulated backend (so real jobs finish and real images exist), then as the
API alone, so nothing changes the state except the requests under test.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from stargraph.bootstrap import SimulateOptions
from stargraph.comfy.sim_config import RECORDED_CHECKPOINT
from stargraph.domain.types import UserId
from tests.e2e.harness import Client, Stack, redis_url_for_tests, running_stargraph, subscriptions
from tests.hostile.judge import Operation, judge, operation_of, signature
from tests.hostile.state import Snapshot, audit_findings, snapshot
from tests.redis_cleanup import forget_prefix

SUBMIT = "mutation($i: Text2ImageInput!) { submitText2Image(input: $i) { id } }"
FOLLOW = (
    "subscription($id: ID!) { jobEvents(jobId: $id) { status "
    "... on JobSucceeded { images { id } } } }"
)
SMALL_JOB = {"prompt": "a lighthouse", "count": 2, "width": 64, "height": 64, "steps": 1}
AUDIT_EVERY = 500
EXAMPLES_PER_PROBLEM = 3
PASSWORD = "correct horse 1"


@dataclass
class Known:
    """Real identifiers the fuzzer mixes into its values, so it reaches past NOT_FOUND."""

    job_ids: list[str] = field(default_factory=list)
    image_ids: list[str] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)
    usernames: list[str] = field(default_factory=list)


@dataclass
class World:
    stack: Stack
    tokens: dict[str, str | None]  # role → bearer token (None: anonymous)
    known: Known
    last: Snapshot
    problems: dict[str, list[str]] = field(default_factory=dict)  # signature → examples
    sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # "field: CODE" or "field: ok"

    async def exchange(
        self, role: str, payload: dict[str, Any] | bytes, content_type: str = "application/json"
    ) -> None:
        """Send one request as `role`, judge the answer and what it changed."""
        token = self.tokens[role]
        headers = {"content-type": content_type}
        if token:
            headers["authorization"] = f"Bearer {token}"
        if isinstance(payload, dict):
            body, operation = _encode(payload), _operation(payload)
        else:
            body, operation = payload, Operation("invalid", ())
        response = await self.stack.client.http.post("/graphql", content=body, headers=headers)
        sent = body.decode("utf-8", "replace")
        verdict = judge(sent, operation, response)
        self._count(operation, response)
        after = await snapshot(self.stack.services)
        if verdict.changes_nothing and after != self.last:
            parts = ", ".join(self.last.difference(after))
            verdict.problems.append(f"a refused request changed state ({parts})")
        self.last = after
        self.sent += 1
        for problem in verdict.problems:
            examples = self.problems.setdefault(signature(problem), [])
            if len(examples) < EXAMPLES_PER_PROBLEM:
                examples.append(f"{problem}\n    request: {sent[:600]!r}")
        if self.sent % AUDIT_EVERY == 0:
            await self.check_audit()

    async def check_audit(self) -> None:
        for finding in await audit_findings(self.stack.services):
            self.problems.setdefault(f"audit: {finding}", [f"ledger audit: {finding}"])

    def _count(self, operation: Operation, response: httpx.Response) -> None:
        """Tally each root field's outcome: its error code, "ok", or "not run"."""
        try:
            body = response.json()
        except ValueError:
            self.outcomes[f"HTTP {response.status_code}"] += 1
            return
        if not isinstance(body, dict):
            self.outcomes[f"HTTP {response.status_code}"] += 1
            return
        errors = body.get("errors") or []
        codes = {str(e["path"][0]): e for e in errors if e.get("path")}
        unplaced = [e for e in errors if not e.get("path")]
        if unplaced:
            codes["*"] = unplaced[0]
        data = body.get("data") or {}
        for key in operation.root_keys or ("*",):
            error = codes.get(key) or codes.get("*")
            outcome = "ok" if data.get(key) is not None else "not run"
            if error is not None:
                outcome = str((error.get("extensions") or {}).get("code"))
            self.outcomes[f"{operation.kind} {key}: {outcome}"] += 1

    def report(self) -> str:
        lines = [f"{len(self.problems)} kinds of problem in {self.sent} requests:"]
        for examples in self.problems.values():
            lines += [f"- {example}" for example in examples]
        return "\n".join(lines)


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _operation(payload: dict[str, Any]) -> Operation:
    query, name = payload.get("query"), payload.get("operationName")
    if not isinstance(query, str):
        return Operation("invalid", ())
    return operation_of(query, name if isinstance(name, str) else None)


async def _finished_job(stack: Stack, user: Client) -> tuple[str, list[str]]:
    """Submit a small job and follow it to its end; its id and image ids."""
    job_id = (await user.data(SUBMIT, {"i": SMALL_JOB}))["submitText2Image"]["id"]
    async with subscriptions(stack.url, user.token) as ws:
        events = [e async for e in ws.events(await ws.subscribe(FOLLOW, {"id": job_id}))]
    last = events[-1]["jobEvents"]
    assert last["status"] == "SUCCEEDED", last
    return job_id, [image["id"] for image in last["images"]]


async def _history(tmp_path: Path, known: Known, overrides: dict[str, Any]) -> dict[str, str]:
    """First run, with the worker: two users, each with a finished job and its images."""
    tokens: dict[str, str] = {}
    async with running_stargraph(
        tmp_path, simulate=SimulateOptions(step_time_s=0.002), **overrides
    ) as stack:
        for role in ("user", "other"):
            client = await stack.client.register(f"fuzz-{role}", PASSWORD)
            job_id, images = await _finished_job(stack, client)
            known.job_ids.append(job_id)
            known.image_ids += images
            known.user_ids.append(client.user_id)
            known.usernames.append(f"fuzz-{role}")
            tokens[role] = client.token
    return tokens


@asynccontextmanager
async def hostile_world(tmp_path: Path, **settings: Any) -> AsyncIterator[World]:
    """The world described in the module docstring, served by the API alone."""
    overrides: dict[str, Any] = {
        "redis_url": redis_url_for_tests(),
        "redis_prefix": f"h{uuid.uuid4().hex[:12]}",
        "default_model": RECORDED_CHECKPOINT,
        "submits_per_minute": 100_000,
        "max_queued_per_user": 40,
        **settings,
    }
    try:
        async with _world(tmp_path, overrides) as world:
            yield world
    finally:
        await forget_prefix(overrides["redis_url"], overrides["redis_prefix"])


@asynccontextmanager
async def _world(tmp_path: Path, overrides: dict[str, Any]) -> AsyncIterator[World]:
    known = Known()
    tokens: dict[str, str | None] = dict(await _history(tmp_path, known, overrides))
    async with running_stargraph(
        tmp_path, simulate=SimulateOptions(step_time_s=0.002), worker=False, **overrides
    ) as stack:
        admin = await stack.admin("fuzz-admin")
        tokens.update(admin=admin.token, anonymous=None)
        known.user_ids.append(admin.user_id)
        known.usernames.append("fuzz-admin")
        for role in ("user", "other"):  # a waiting job each (no worker runs now)
            client = stack.client.as_user(tokens[role])
            known.job_ids.append(
                (await client.data(SUBMIT, {"i": SMALL_JOB}))["submitText2Image"]["id"]
            )
        await stack.services.ledger.grant(UserId(int(known.user_ids[0])), 10_000, "fuzz budget")
        world = World(stack, tokens, known, await snapshot(stack.services))
        await world.check_audit()
        yield world
