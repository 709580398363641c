"""A WebSocket drop in the middle of a job: the page reconnects and misses no event."""

from __future__ import annotations

import time
import uuid

import pytest
from browser_harness import Service, Session

try:
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip (or fail when services are required)
    expect = None

pytestmark = pytest.mark.browser

STEPS = 40
JOB = "query Job($id: ID!) { job(id: $id) { status progress { step } } }"


def _wait_server_moves_on(service: Service, token: str, job_id: str, beyond: int) -> None:
    """While the page is cut off, wait until the service has produced events it did not see."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = service.gql(JOB, {"id": job_id}, token=token)["job"]
        step = (job["progress"] or {}).get("step", 0)
        if step > beyond or job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return
        time.sleep(0.1)
    pytest.fail(f"job {job_id} made no progress on the service while the page was offline")


def test_socket_drop_mid_job_loses_no_event(session: Session) -> None:
    page = session.page
    session.sign_up("reconnect")
    token = session.token
    card = session.submit(f"a paper boat on a river {uuid.uuid4().hex[:6]}", steps=STEPS)
    job_id = card.get_attribute("data-job-id")
    session.wait_step(card, 3)
    assert page.evaluate("window.__stargraph.connections") == 1

    session.context.set_offline(True)
    page.evaluate("window.__stargraph.dropSocket()")
    status = page.get_by_test_id("connection-status")
    expect(status).to_have_attribute("data-state", "reconnecting")
    seen = max(e["step"] for e in session.events(job_id, "JobProgress"))
    session.shot("connection-lost")

    _wait_server_moves_on(session.service, token, job_id, beyond=seen + 5)
    session.context.set_offline(False)
    expect(status).to_have_attribute("data-state", "open")
    expect(card).to_have_attribute("data-status", "SUCCEEDED")
    session.shot("recovered")

    assert page.evaluate("window.__stargraph.connections") >= 2
    steps = [e["step"] for e in session.events(job_id, "JobProgress")]
    assert steps == list(range(1, STEPS + 1)), f"missed or repeated steps: {steps}"
    assert len(session.events(job_id, "JobSucceeded")) == 1
    # re-sent JobQueued events share the cursor of the event before them; the rest are unique
    cursors = [e["cursor"] for e in session.events(job_id) if e["type"] != "JobQueued"]
    assert len(cursors) == len(set(cursors)), "an event arrived twice"
    expect(card.get_by_test_id("job-image")).to_have_count(1)
