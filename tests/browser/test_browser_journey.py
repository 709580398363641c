"""The product in a real browser: a Chinese prompt from the queue to the gallery, and cancel."""

from __future__ import annotations

import contextlib
import re
import uuid

import pytest

from tests.browser.browser_harness import PRICE_PER_IMAGE, SIGNUP_POINTS, Session

with contextlib.suppress(ImportError):  # the fixtures skip (or fail when services are required)
    from playwright.async_api import Locator, expect

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

SUBMIT = """mutation Submit($input: Text2ImageInput!) {
  submitText2Image(input: $input) { id }
}"""
CANCEL = "mutation Cancel($id: ID!) { cancelJob(id: $id) { status } }"
HAN = re.compile(r"[\u4e00-\u9fff]")
NEGATIVE = "blurry, watermark"
LONG_STEPS = 100  # 10 s a job on the simulator: the queue stands still until the test moves it


async def _submit_long(session: Session, label: str) -> str:
    key = uuid.uuid4().hex
    job = {"prompt": f"{label} {key[:6]}", "steps": LONG_STEPS, "idempotencyKey": key}
    job_id: str = (await session.gql(SUBMIT, {"input": job}))["submitText2Image"]["id"]
    return job_id


async def _cancel(session: Session, *job_ids: str) -> None:
    for job_id in job_ids:
        await session.gql(CANCEL, {"id": job_id})


async def _fill_the_queue(session: Session) -> tuple[list[str], list[str]]:
    """Long jobs of the same user (another tab, through the API) on every simulated backend,
    and two more waiting; returns (running ids, waiting ids) once the page shows them so."""
    backends = (await session.gql("{ queue { healthyBackends } }"))["queue"]["healthyBackends"]
    running = [await _submit_long(session, f"busy backend {n}") for n in range(backends)]
    for job_id in running:
        card = session.page.locator(f'[data-testid="job-card"][data-job-id="{job_id}"]')
        await expect(card).to_have_attribute("data-status", re.compile("^(DISPATCHED|RUNNING)$"))
    waiting = [await _submit_long(session, f"waiting ahead {n}") for n in range(2)]
    return running, waiting


async def _watch_the_queue_move(session: Session, card: Locator) -> None:
    """The job waits third; a job ahead is cancelled (2nd), a running one is cancelled so the
    next is dispatched (1st, with an ETA); every remaining job ahead ends and ours runs."""
    await session.wait_until_idle()  # jobs of earlier tests would count ahead of ours
    running, waiting = await _fill_the_queue(session)
    await session.page.get_by_test_id("submit-button").dblclick()  # must make ONE job
    position = card.get_by_test_id("job-position")
    await expect(position).to_have_attribute("data-position", "3")
    await session.shot("queued-third")

    await _cancel(session, waiting[0])  # a job ahead leaves the queue
    await expect(position).to_have_attribute("data-position", "2")
    await _cancel(session, running[0])  # a backend frees: the job ahead is dispatched
    await expect(position).to_have_attribute("data-position", "1")
    await expect(card.get_by_test_id("job-eta")).to_have_text(re.compile(r"\d"))
    await session.shot("next-in-line")

    await _cancel(session, waiting[1], *running[1:])
    await session.wait_step(card, 3)
    await session.shot("progress")
    await session.wait_step(card, 10)
    await session.shot("progress-advanced")


async def test_chinese_prompt_from_queue_to_gallery(session: Session) -> None:
    page = session.page
    await session.sign_up("journey")
    available = page.get_by_test_id("balance-available")
    await expect(available).to_have_attribute("data-value", str(SIGNUP_POINTS))
    await session.shot("signed-up")

    prompt = f"月光下的一只猫，水彩画风格 {uuid.uuid4().hex[:6]}"
    await session.fill(prompt, count=2, steps=20)
    await page.get_by_test_id("negative-prompt").fill(NEGATIVE)
    await page.get_by_test_id("size-512x768").click()
    cost = page.get_by_test_id("cost")
    await expect(cost).to_have_attribute("data-cost", str(2 * PRICE_PER_IMAGE))
    await session.shot("form-filled")
    card = page.get_by_test_id("job-card").filter(has_text=prompt)
    await _watch_the_queue_move(session, card)
    await expect(card).to_have_count(1)
    job_id = await card.get_attribute("data-job-id")
    assert job_id is not None

    await expect(card).to_have_attribute("data-status", "SUCCEEDED")
    images = card.get_by_test_id("job-image")
    await expect(images).to_have_count(2)
    await page.wait_for_function(
        'id => [...document.querySelectorAll(`[data-job-id="${id}"] [data-testid=job-image]`)]'
        ".every(img => img.complete && img.naturalWidth > 0)",
        arg=job_id,
    )
    sizes = await images.evaluate_all("imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    assert sizes == [[512, 768], [512, 768]]
    charged = card.get_by_test_id("job-charged")
    await expect(charged).to_have_attribute("data-amount", str(2 * PRICE_PER_IMAGE))
    await session.shot("results")

    # What the page lived through: the position counted down, the bar stepped, previews came.
    positions = [e["position"] for e in await session.events(job_id, "JobQueued")]
    assert positions == [3, 2, 1], positions
    steps = [e["step"] for e in await session.events(job_id, "JobProgress")]
    assert steps == sorted(set(steps)) and steps[-1] == 20, steps
    assert await session.events(job_id, "JobPreview"), "no live preview arrived"
    preview = await card.get_by_test_id("job-preview").get_attribute("src")
    assert preview is not None and preview.startswith("data:image/")

    # One job and one charge for the double click; the jobs ahead were refunded in full.
    jobs = await session.gql("{ jobs(first: 50) { edges { node { prompt } } } }")
    assert [e["node"]["prompt"] for e in jobs["jobs"]["edges"]].count(prompt) == 1
    spent = 2 * PRICE_PER_IMAGE
    await expect(available).to_have_attribute("data-value", str(SIGNUP_POINTS - spent))
    await expect(page.get_by_test_id("balance-frozen")).to_have_attribute("data-value", "0")

    await _check_gallery(session, card, prompt)


async def _check_gallery(session: Session, card: Locator, prompt: str) -> None:
    """The job's images are in the gallery with their details; settings reuse; delete."""
    page = session.page
    image_id = await card.locator("[data-image-id]").first.get_attribute("data-image-id")
    item = page.locator(f'[data-testid="gallery-item"][data-image-id="{image_id}"]')
    await expect(item).to_be_visible()
    await item.scroll_into_view_if_needed()
    await session.shot("gallery")

    await item.click()
    dialog = page.get_by_test_id("image-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_test_id("detail-prompt")).to_have_text(prompt)
    translated = await dialog.get_by_test_id("detail-translated-prompt").inner_text()
    assert re.search(r"[A-Za-z]", translated) and not HAN.search(translated), translated
    await expect(dialog.get_by_test_id("detail-negative-prompt")).to_have_text(NEGATIVE)
    await expect(dialog.get_by_test_id("detail-size")).to_have_text("512×768")
    await expect(dialog.get_by_test_id("detail-workflow")).to_have_text("t2i")
    seed = await dialog.get_by_test_id("detail-seed").inner_text()
    assert seed.isdigit(), seed
    await session.shot("details")

    await dialog.get_by_test_id("detail-reuse").click()
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_test_id("prompt")).to_have_value(prompt)
    await expect(page.get_by_test_id("negative-prompt")).to_have_value(NEGATIVE)
    await expect(page.get_by_test_id("seed-random")).not_to_be_checked()
    await expect(page.get_by_test_id("seed")).to_have_value(seed)
    await expect(page.get_by_test_id("height")).to_have_value("768")
    await expect(page.get_by_test_id("count")).to_have_value("2")
    await expect(page.get_by_test_id("steps")).to_have_value("20")
    await session.shot("settings-reused")

    await item.click()
    await dialog.get_by_test_id("detail-delete").click()
    await dialog.get_by_test_id("detail-delete").click()  # the second click confirms
    await expect(dialog).to_be_hidden()
    await expect(item).to_have_count(0)
    await session.shot("deleted")


async def test_cancel_at_any_moment_refunds(session: Session) -> None:
    page = session.page
    await session.sign_up("cancel")
    available = page.get_by_test_id("balance-available")
    frozen = page.get_by_test_id("balance-frozen")
    await expect(available).to_have_attribute("data-value", str(SIGNUP_POINTS))

    tag = uuid.uuid4().hex[:6]
    first = await session.submit(f"a lighthouse in a storm, oil painting {tag}", steps=100)
    second = await session.submit(f"a lighthouse at dawn, oil painting {tag}", steps=100)
    await expect(frozen).to_have_attribute("data-value", str(2 * PRICE_PER_IMAGE))
    await session.shot("two-held")

    await second.get_by_test_id("job-cancel").click()  # waiting or just dispatched
    await expect(second).to_have_attribute("data-status", "CANCELLED")
    refund = second.get_by_test_id("job-refund")
    await expect(refund).to_have_attribute("data-amount", str(PRICE_PER_IMAGE))

    await session.wait_step(first, 2)  # and one that is running
    await session.shot("running")
    await first.get_by_test_id("job-cancel").click()
    await expect(first).to_have_attribute("data-status", "CANCELLED")
    refund = first.get_by_test_id("job-refund")
    await expect(refund).to_be_visible()
    await expect(refund).to_have_attribute("data-amount", str(PRICE_PER_IMAGE))

    await expect(available).to_have_attribute("data-value", str(SIGNUP_POINTS))
    await expect(frozen).to_have_attribute("data-value", "0")
    await expect(first.get_by_test_id("job-cancel")).to_be_hidden()
    await session.shot("refunded")
