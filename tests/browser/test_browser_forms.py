"""Language and errors: the browser's language first, a remembered choice, errors by their field."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Awaitable, Callable

import pytest

from tests.browser.browser_harness import PASSWORD, SIGNUP_POINTS, Session

with contextlib.suppress(ImportError):  # the fixtures skip (or fail when services are required)
    from playwright.async_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_language_follows_the_browser_and_is_remembered(
    session_factory: Callable[[str], Awaitable[Session]],
) -> None:
    session = await session_factory("zh-CN")
    page = await session.open()
    title = page.locator("#auth-title")
    await expect(title).to_have_text("欢迎使用 StarGraph")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await session.shot("chinese")

    await page.get_by_test_id("lang-select").select_option("en")
    await expect(title).to_have_text("Welcome to StarGraph")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.reload()
    await expect(title).to_have_text("Welcome to StarGraph")
    await expect(page.get_by_test_id("lang-select")).to_have_value("en")
    await session.shot("english-remembered")

    # Signed in, the whole app switches, live parts included.
    await session.sign_up("lang")
    await expect(page.get_by_test_id("connection-status")).to_contain_text("Live")
    await page.get_by_test_id("lang-select").select_option("zh")
    await expect(page.get_by_test_id("connection-status")).to_contain_text("实时")
    await expect(page.get_by_test_id("submit-button")).to_contain_text("生成")
    await session.shot("chinese-app")


async def test_errors_show_next_to_their_field(session: Session) -> None:
    page = session.page
    await session.sign_up("errors")
    submit = page.get_by_test_id("submit-button")

    # Checked in the page: nothing is sent.
    await page.get_by_test_id("size-custom").click()
    await page.get_by_test_id("width").fill("100")
    await submit.click()
    await expect(page.get_by_test_id("error-width")).to_be_visible()
    await expect(page.get_by_test_id("width")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_test_id("error-prompt")).to_be_visible()
    await expect(page.get_by_test_id("jobs-empty")).to_be_visible()
    await session.shot("checked-in-page")

    # Refused by the service (BAD_USER_INPUT with its field): a sampler no backend offers.
    await page.get_by_test_id("size-512x512").click()
    await session.fill("a red bicycle")
    await page.get_by_test_id("sampler").evaluate(
        "s => { s.add(new Option('no_such_sampler')); s.value = 'no_such_sampler'; }"
    )
    await submit.click()
    await expect(page.get_by_test_id("error-sampler")).to_be_visible()
    await expect(page.get_by_test_id("form-error")).to_be_visible()
    await expect(page.get_by_test_id("jobs-empty")).to_be_visible()
    assert await session.balance() == (SIGNUP_POINTS, 0)
    await session.shot("refused-by-service")

    # Not enough points: flagged before sending, refused when sent anyway.
    await page.get_by_test_id("sampler").select_option(index=0)
    tag = uuid.uuid4().hex[:6]
    sketches = [
        await session.submit(f"a tiny sketch {n} {tag}", count=8, steps=1)
        for n in range(SIGNUP_POINTS // 80)
    ]
    await session.fill(f"one too many {tag}", count=8, steps=1)
    await expect(page.get_by_test_id("cost")).to_have_class(re.compile(r"\bis-short\b"))
    await submit.click()
    await expect(page.get_by_test_id("form-error")).to_have_text(
        "Not enough points for this request."
    )
    await expect(page.get_by_test_id("job-card").filter(has_text="one too many")).to_have_count(0)
    await session.shot("not-enough-points")
    for card in sketches:  # leave the shared service idle for the next test
        await expect(card).to_have_attribute("data-status", "SUCCEEDED")


async def test_sign_in_and_the_priorities_a_role_may_use(session: Session) -> None:
    page = session.page
    admin = f"admin_{uuid.uuid4().hex[:8]}"
    await session.service.cli("users", "create", admin, "--admin", "--password", PASSWORD)
    await session.sign_in(admin)
    priority = page.get_by_test_id("priority")
    options = priority.locator("option")
    await expect(options).to_have_count(4)
    assert await options.evaluate_all("os => os.map(o => o.value)") == [
        "NORMAL", "LOW", "HIGH", "URGENT"]  # fmt: skip
    await session.fill(f"an urgent poster {uuid.uuid4().hex[:6]}", steps=1)
    await priority.select_option("URGENT")
    await page.get_by_test_id("submit-button").click()
    card = page.get_by_test_id("job-card").first
    await expect(card).to_have_attribute("data-status", "SUCCEEDED")
    await session.shot("admin-signed-in")

    await page.get_by_test_id("logout-button").click()
    await expect(page.get_by_test_id("auth-view")).to_be_visible()
    await expect(page.get_by_test_id("job-card")).to_have_count(0)
    await session.sign_up("plain")
    await expect(options).to_have_count(2)
    assert await options.evaluate_all("os => os.map(o => o.value)") == ["NORMAL", "LOW"]
    await session.shot("user-signed-in")
