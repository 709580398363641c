"""The product in a real browser: a Chinese prompt from the queue to the gallery, and cancel."""

from __future__ import annotations

import re
import uuid

import pytest
from browser_harness import PRICE_PER_IMAGE, SIGNUP_POINTS, Session

try:
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip (or fail when services are required)
    expect = None

pytestmark = pytest.mark.browser

SUBMIT = """mutation Submit($input: Text2ImageInput!) {
  submitText2Image(input: $input) { id status queuePosition }
}"""
HAN = re.compile(r"[\u4e00-\u9fff]")


def _occupy_backends(session: Session) -> int:
    """Keep every simulated backend busy and one more job waiting; returns how many were sent."""
    token = session.token
    backends = session.service.gql("{ queue { healthyBackends } }", token=token)["queue"]
    count = backends["healthyBackends"] + 1
    for n in range(count):
        key = uuid.uuid4().hex
        job = {"prompt": f"filler {n} {key}", "steps": 30, "idempotencyKey": key}
        session.service.gql(SUBMIT, {"input": job}, token=token)
    return count


def test_chinese_prompt_from_queue_to_gallery(session: Session) -> None:
    page = session.page
    session.sign_up("journey")
    available = page.get_by_test_id("balance-available")
    expect(available).to_have_attribute("data-value", str(SIGNUP_POINTS))
    session.shot("signed-up")

    prompt = f"月光下的一只猫，水彩画风格 {uuid.uuid4().hex[:6]}"
    session.fill(prompt, count=2, steps=20)
    page.get_by_test_id("size-512x768").click()
    expect(page.get_by_test_id("cost")).to_have_attribute("data-cost", str(2 * PRICE_PER_IMAGE))
    session.shot("form-filled")
    fillers = _occupy_backends(session)
    page.get_by_test_id("submit-button").dblclick()  # a double click must make one job

    card = page.get_by_test_id("job-card").filter(has_text=prompt)
    expect(card).to_have_count(1)
    job_id = card.get_attribute("data-job-id")
    position = card.get_by_test_id("job-position")
    expect(position).to_have_attribute("data-position", re.compile(r"^([2-9]|\d\d+)$"))
    session.shot("queued")
    expect(position).to_have_attribute("data-position", "1")
    expect(card.get_by_test_id("job-eta")).not_to_be_empty()
    session.shot("next-in-line")

    session.wait_step(card, 3)
    session.shot("progress")
    session.wait_step(card, 10)
    session.shot("progress-advanced")

    expect(card).to_have_attribute("data-status", "SUCCEEDED")
    images = card.get_by_test_id("job-image")
    expect(images).to_have_count(2)
    page.wait_for_function(
        'id => [...document.querySelectorAll(`[data-job-id="${id}"] [data-testid=job-image]`)]'
        ".every(img => img.complete && img.naturalWidth > 0)",
        arg=job_id,
    )
    assert images.evaluate_all("imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])") == [
        [512, 768],
        [512, 768],
    ]
    expect(card.get_by_test_id("job-charged")).to_have_attribute(
        "data-amount", str(2 * PRICE_PER_IMAGE)
    )
    session.shot("results")

    # What the page lived through: the position counted down, the bar stepped, previews came.
    positions = [e["position"] for e in session.events(job_id, "JobQueued")]
    assert positions[0] >= 2 and positions[-1] == 1, positions
    assert positions == sorted(positions, reverse=True), positions
    steps = [e["step"] for e in session.events(job_id, "JobProgress")]
    assert steps == sorted(set(steps)) and steps[-1] == 20, steps
    assert session.events(job_id, "JobPreview"), "no live preview arrived"
    assert card.get_by_test_id("job-preview").get_attribute("src").startswith("data:image/")

    # One job and one charge for the double click; every hold settled.
    jobs = session.service.gql(
        "{ jobs(first: 50) { edges { node { prompt } } } }", token=session.token
    )
    assert [e["node"]["prompt"] for e in jobs["jobs"]["edges"]].count(prompt) == 1
    spent = (fillers + 2) * PRICE_PER_IMAGE
    expect(available).to_have_attribute("data-value", str(SIGNUP_POINTS - spent))
    expect(page.get_by_test_id("balance-frozen")).to_have_attribute("data-value", "0")

    _check_gallery(session, card, prompt)


def _check_gallery(session: Session, card, prompt: str) -> None:
    """The job's images are in the gallery with their details; settings reuse; delete."""
    page = session.page
    image_id = card.locator("[data-image-id]").first.get_attribute("data-image-id")
    item = page.locator(f'[data-testid="gallery-item"][data-image-id="{image_id}"]')
    expect(item).to_be_visible()
    item.scroll_into_view_if_needed()
    session.shot("gallery")

    item.click()
    dialog = page.get_by_test_id("image-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_test_id("detail-prompt")).to_have_text(prompt)
    translated = dialog.get_by_test_id("detail-translated-prompt").inner_text()
    assert re.search(r"[A-Za-z]", translated) and not HAN.search(translated), translated
    expect(dialog.get_by_test_id("detail-size")).to_have_text("512×768")
    seed = dialog.get_by_test_id("detail-seed").inner_text()
    assert seed.isdigit(), seed
    session.shot("details")

    dialog.get_by_test_id("detail-reuse").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("prompt")).to_have_value(prompt)
    expect(page.get_by_test_id("seed-random")).not_to_be_checked()
    expect(page.get_by_test_id("seed")).to_have_value(seed)
    expect(page.get_by_test_id("height")).to_have_value("768")
    session.shot("settings-reused")

    item.click()
    dialog.get_by_test_id("detail-delete").click()
    dialog.get_by_test_id("detail-delete").click()  # the second click confirms
    expect(dialog).to_be_hidden()
    expect(item).to_have_count(0)
    session.shot("deleted")


def test_cancel_at_any_moment_refunds(session: Session) -> None:
    page = session.page
    session.sign_up("cancel")
    available = page.get_by_test_id("balance-available")
    frozen = page.get_by_test_id("balance-frozen")
    expect(available).to_have_attribute("data-value", str(SIGNUP_POINTS))

    tag = uuid.uuid4().hex[:6]
    first = session.submit(f"a lighthouse in a storm, oil painting {tag}", steps=100)
    second = session.submit(f"a lighthouse at dawn, oil painting {tag}", steps=100)
    expect(frozen).to_have_attribute("data-value", str(2 * PRICE_PER_IMAGE))
    session.shot("two-held")

    second.get_by_test_id("job-cancel").click()  # most likely still waiting
    expect(second).to_have_attribute("data-status", "CANCELLED")
    expect(second.get_by_test_id("job-refund")).to_have_attribute(
        "data-amount", str(PRICE_PER_IMAGE)
    )

    session.wait_step(first, 2)  # and one that is running
    session.shot("running")
    first.get_by_test_id("job-cancel").click()
    expect(first).to_have_attribute("data-status", "CANCELLED")
    refund = first.get_by_test_id("job-refund")
    expect(refund).to_be_visible()
    expect(refund).to_have_attribute("data-amount", str(PRICE_PER_IMAGE))

    expect(available).to_have_attribute("data-value", str(SIGNUP_POINTS))
    expect(frozen).to_have_attribute("data-value", "0")
    expect(first.get_by_test_id("job-cancel")).to_be_hidden()
    session.shot("refunded")
