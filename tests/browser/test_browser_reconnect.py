"""A WebSocket drop in the middle of a job: the page reconnects and misses no event."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from tests.browser.browser_harness import Session

with contextlib.suppress(ImportError):  # the fixtures skip (or fail when services are required)
    from playwright.async_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

STEPS = 40
JOB = "query Job($id: ID!) { job(id: $id) { status progress { step } } }"


async def _wait_server_moves_on(session: Session, job_id: str, beyond: int) -> None:
    """While the page is cut off, wait until the service has produced events it did not see
    (a test-side wait through the API; the page itself is offline)."""
    for _ in range(300):
        job = (await session.gql(JOB, {"id": job_id}))["job"]
        step = (job["progress"] or {}).get("step", 0)
        if step > beyond or job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"job {job_id} made no progress on the service while the page was offline")


async def test_socket_drop_mid_job_loses_no_event(session: Session) -> None:
    page = session.page
    await session.sign_up("reconnect")
    card = await session.submit(f"a paper boat on a river {uuid.uuid4().hex[:6]}", steps=STEPS)
    job_id = await card.get_attribute("data-job-id")
    assert job_id is not None
    await session.wait_step(card, 3)
    assert await page.evaluate("window.__stargraph.connections") == 1

    await session.context.set_offline(True)
    await page.evaluate("window.__stargraph.dropSocket()")
    status = page.get_by_test_id("connection-status")
    await expect(status).to_have_attribute("data-state", "reconnecting")
    seen = max(e["step"] for e in await session.events(job_id, "JobProgress"))
    await session.shot("connection-lost")

    await _wait_server_moves_on(session, job_id, beyond=seen + 5)
    await session.context.set_offline(False)
    await expect(status).to_have_attribute("data-state", "open")
    await expect(card).to_have_attribute("data-status", "SUCCEEDED")
    await session.shot("recovered")

    assert await page.evaluate("window.__stargraph.connections") >= 2
    steps = [e["step"] for e in await session.events(job_id, "JobProgress")]
    assert steps == list(range(1, STEPS + 1)), f"missed or repeated steps: {steps}"
    assert len(await session.events(job_id, "JobSucceeded")) == 1
    # re-sent JobQueued events share the cursor of the event before them; the rest are unique
    cursors = [e["cursor"] for e in await session.events(job_id) if e["type"] != "JobQueued"]
    assert len(cursors) == len(set(cursors)), "an event arrived twice"
    await expect(card.get_by_test_id("job-image")).to_have_count(1)
