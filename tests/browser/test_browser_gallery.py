"""The gallery in pages: newest first, older pages reached and left again, delete on a page."""

from __future__ import annotations

import contextlib
import re
import uuid

import pytest

from tests.browser.browser_harness import Session

with contextlib.suppress(ImportError):  # the fixtures skip (or fail when services are required)
    from playwright.async_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

PAGE_SIZE = 12  # the client's page size
SUBMIT = """mutation Submit($input: Text2ImageInput!) {
  submitText2Image(input: $input) { id }
}"""


async def _make_images(session: Session, prompt: str, count: int) -> str:
    """One quick job of `count` images (from another tab, through the API); waits until the
    page has seen it succeed."""
    job = {"prompt": prompt, "count": count, "steps": 1, "idempotencyKey": uuid.uuid4().hex}
    job_id: str = (await session.gql(SUBMIT, {"input": job}))["submitText2Image"]["id"]
    card = session.page.locator(f'[data-testid="job-card"][data-job-id="{job_id}"]')
    await expect(card).to_have_attribute("data-status", "SUCCEEDED")
    return job_id


async def test_gallery_pages_through_older_images(session: Session) -> None:
    page = session.page
    await session.sign_up("gallery")
    tag = uuid.uuid4().hex[:6]
    await _make_images(session, f"the oldest picture {tag}", 1)
    for n, count in enumerate((8, PAGE_SIZE - 8)):  # a job makes at most 8
        await _make_images(session, f"newer pictures {n} {tag}", count)

    items = page.get_by_test_id("gallery-item")
    label = page.get_by_test_id("gallery-page")
    older, newer = page.get_by_test_id("gallery-next"), page.get_by_test_id("gallery-prev")
    await expect(items).to_have_count(PAGE_SIZE)
    await expect(items.first).to_have_attribute("title", re.compile("newer pictures"))
    await expect(page.get_by_test_id("gallery-pager")).to_be_visible()
    await expect(newer).to_be_disabled()
    await page.get_by_test_id("gallery-pager").scroll_into_view_if_needed()
    await session.shot("first-page")

    await older.click()
    await expect(label).to_have_text("Page 2")
    await expect(items).to_have_count(1)
    await expect(items.first).to_have_attribute("title", f"the oldest picture {tag}")
    await expect(older).to_be_disabled()
    await session.shot("second-page")

    await newer.click()
    await expect(label).to_have_text("Page 1")
    await expect(items).to_have_count(PAGE_SIZE)
    await older.click()
    await expect(items).to_have_count(1)

    # Deleting the only image of the last page goes back to the page before, now the only one.
    await items.first.click()
    dialog = page.get_by_test_id("image-dialog")
    await dialog.get_by_test_id("detail-delete").click()
    await dialog.get_by_test_id("detail-delete").click()
    await expect(dialog).to_be_hidden()
    await expect(items).to_have_count(PAGE_SIZE)
    await expect(page.get_by_test_id("gallery-pager")).to_be_hidden()
    await session.shot("last-page-emptied")
