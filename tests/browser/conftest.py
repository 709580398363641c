"""Fixtures of the browser tests: Debian's Chromium (Playwright) on `stargraph serve --simulate`.

Playwright runs on its asyncio API. Chromium lives for the whole session on pytest-asyncio's
session loop, so the async fixtures here and every browser test run with
`loop_scope="session"` (each test module sets it in `pytestmark`); other asyncio tests in the
same worker keep their own loops. The service is a plain subprocess, started once per session.

Without Chromium or Playwright the tests skip with one line; `STARGRAPH_TEST_SERVICES=required`
turns that into a failure. Every test writes screenshots to `test-artifacts/screenshots/`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import pytest_asyncio
from pluggy import Result

from tests.browser.browser_harness import (
    ARTIFACTS,
    Screens,
    Service,
    Session,
    chromium,
    fake_ollama_exists,
    need,
    need_browser,
    running_service,
)

with contextlib.suppress(ImportError):  # need_browser() skips
    from playwright.async_api import Browser


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`stargraph serve --simulate` + the fake Ollama, once per session (per xdist worker)."""
    need_browser()
    need(fake_ollama_exists(), "tests/fakes/ollama is missing (the fake Ollama server)")
    with running_service(tmp_path_factory.mktemp("web")) as running:
        yield running


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the session; it and Playwright's driver end with it."""
    need_browser()
    async with chromium() as launched:
        yield launched


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@asynccontextmanager
async def _new_session(
    browser: Browser, service: Service, request: pytest.FixtureRequest, locale: str
) -> AsyncIterator[Session]:
    context = await browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    errors: list[str] = []
    console: list[str] = []
    name = request.node.name.replace("[", "-").replace("]", "")
    try:
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
        session = Session(page, context, service, Screens(page, name), errors)
        yield session
        rep_call = getattr(request.node, "rep_call", None)
        if rep_call is not None and rep_call.failed:
            await session.shot("failure")
            print("---- service log (tail) ----\n" + service.log_tail())
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"console-{name}.log").write_text("\n".join(console))
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest_asyncio.fixture(loop_scope="session")
async def session(
    browser: Browser, service: Service, request: pytest.FixtureRequest
) -> AsyncIterator[Session]:
    """A fresh English-speaking browser context (its own storage) on the running service."""
    async with _new_session(browser, service, request, "en-US") as made:
        yield made


@pytest_asyncio.fixture(loop_scope="session")
async def session_factory(
    browser: Browser, service: Service, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[[str], Awaitable[Session]]]:
    """Make sessions with a given browser locale (e.g. "zh-CN"); all closed after the test."""
    async with AsyncExitStack() as opened:

        async def make(locale: str) -> Session:
            return await opened.enter_async_context(_new_session(browser, service, request, locale))

        yield make
