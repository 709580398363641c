"""Fixtures of the browser tests: Debian's Chromium (Playwright) on `stargraph serve --simulate`.

Without Chromium or Playwright the tests skip with one line; `STARGRAPH_TEST_SERVICES=required`
turns that into a failure. Every test writes screenshots to `test-artifacts/screenshots/`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from browser_harness import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    Screens,
    Service,
    Session,
    fake_ollama_exists,
    need,
    need_browser,
    running_service,
    sync_playwright,
)

try:
    from playwright.sync_api import Browser
except ImportError:  # need_browser() skips
    Browser = None


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`stargraph serve --simulate` + the fake Ollama, once per session (per xdist worker)."""
    need_browser()
    need(fake_ollama_exists(), "tests/fakes/ollama is missing (the fake Ollama server)")
    with running_service(tmp_path_factory.mktemp("web")) as running:
        yield running


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    need_browser()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _new_session(
    browser: Browser, service: Service, request: pytest.FixtureRequest, locale: str
) -> Iterator[Session]:
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    name = request.node.name.replace("[", "-").replace("]", "")
    session = Session(page, context, service, Screens(page, name), errors)
    yield session
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        session.shot("failure")
        print("---- service log (tail) ----\n" + service.log_tail())
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"console-{name}.log").write_text("\n".join(console))
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def session(
    browser: Browser, service: Service, request: pytest.FixtureRequest
) -> Iterator[Session]:
    """A fresh English-speaking browser context (its own storage) on the running service."""
    yield from _new_session(browser, service, request, "en-US")


@pytest.fixture
def session_factory(
    browser: Browser, service: Service, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Session]]:
    """Make sessions with a given browser locale (e.g. "zh-CN")."""
    made: list[Iterator[Session]] = []

    def make(locale: str) -> Session:
        gen = _new_session(browser, service, request, locale)
        made.append(gen)
        return next(gen)

    yield make
    for gen in made:
        next(gen, None)
