"""The browser tests' harness: start `stargraph serve --simulate`, drive the page, take screenshots.

The service runs as a subprocess on a free port with its own SQLite file, image folder and the
fake Ollama (`python -m tests.fakes.ollama`). The page is driven through Playwright's asyncio
API, so the tests are ordinary pytest-asyncio tests: the sync API would leave an event loop
running in the worker's thread and break every asyncio test that runs after it there.
Without Chromium or Playwright the tests skip with one line; `STARGRAPH_TEST_SERVICES=required`
turns that into a failure. Every test writes screenshots to `test-artifacts/screenshots/`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import free_port

try:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        Locator,
        Page,
        async_playwright,
        expect,
    )
except ImportError:  # the skip below says so
    HAVE_PLAYWRIGHT = False
else:
    HAVE_PLAYWRIGHT = True
    expect.set_options(timeout=20_000)  # jobs take seconds on the simulator

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM = os.environ.get("STARGRAPH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRED = os.environ.get("STARGRAPH_TEST_SERVICES", "auto") == "required"
SIM_STEP_TIME = "0.1"  # seconds per simulated step: slow enough to watch, fast enough to test
PRICE_PER_IMAGE = 10
SIGNUP_POINTS = 200
STARTUP_TIMEOUT_S = 60
PASSWORD = "correct horse battery staple"


def need(ok: bool, reason: str) -> None:
    """Skip with a one-line reason, or fail when STARGRAPH_TEST_SERVICES=required."""
    if ok:
        return
    if REQUIRED:
        pytest.fail(f"{reason} (STARGRAPH_TEST_SERVICES=required)")
    pytest.skip(reason)


def need_browser() -> None:
    need(HAVE_PLAYWRIGHT, "playwright is not installed (pip install playwright)")
    need(Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM} (apt-get install chromium)")


def fake_ollama_exists() -> bool:
    fakes = REPO / "tests" / "fakes"
    return (fakes / "ollama.py").exists() or (fakes / "ollama" / "__main__.py").exists()


@dataclass
class Service:
    """A running `stargraph serve --simulate` and what tests need to reach it."""

    url: str
    log: Path
    env: dict[str, str]
    root: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    async def cli(self, *args: str) -> str:
        """Run `stargraph ARGS` on the service's database, as its operator would."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stargraph", *args,
            env=self.env, cwd=self.root,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode(errors="replace")
        return out.decode()

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def gql(
        self, query: str, variables: dict[str, Any] | None = None, token: str = ""
    ) -> Any:
        """POST one GraphQL request as a plain client would; returns `data`, raises on errors."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                f"{self.url}/graphql",
                json={"query": query, "variables": variables or {}},
                headers=headers,
            )
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]


def _spawn(args: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)


def _wait_until(
    check: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log: Path
) -> None:
    """Start-up wait (not a hot path): poll until ready, the process dies, or the deadline."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} not ready after {STARTUP_TIMEOUT_S} s:\n{log.read_text(errors='replace')}")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _ready(url: str) -> bool:
    try:
        ready = httpx.get(f"{url}/readyz", timeout=1)
        if ready.status_code == 404:  # no readiness probe: being alive will do
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        return ready.status_code == 200
    except httpx.HTTPError:
        return False


def _service_env(root: Path, ollama_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARGRAPH_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        STARGRAPH_DATABASE_URL=f"sqlite://{root / 'stargraph.db'}",
        STARGRAPH_STORAGE_DIR=str(root / "images"),
        STARGRAPH_OLLAMA_URL=f"http://127.0.0.1:{ollama_port}",
        STARGRAPH_PRICE_PER_IMAGE=str(PRICE_PER_IMAGE),
        STARGRAPH_SIGNUP_POINTS=str(SIGNUP_POINTS),
        # one job per simulated backend at a time, so later jobs visibly wait in our queue
        STARGRAPH_COMFYUI_MAX_INFLIGHT="1",
        STARGRAPH_SUBMITS_PER_MINUTE="300",
        STARGRAPH_SECRET_KEY=uuid.uuid4().hex,
    )
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _post(service: Service, query: str, variables: dict[str, Any], token: str = "") -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = httpx.post(
        f"{service.url}/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=10,
    ).json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


def _warm_up(service: Service, server: subprocess.Popen[bytes]) -> None:
    """Run one tiny job to its end, so the service has measured a backend's pace (the queue's
    ETA) like any service that has worked before. A start-up wait: it polls."""
    name = f"warmup_{uuid.uuid4().hex[:8]}"
    register = "mutation R($n: String!) { register(username: $n, password: $n) { token } }"
    token = _post(service, register, {"n": name})["register"]["token"]
    submit = "mutation S($i: Text2ImageInput!) { submitText2Image(input: $i) { id } }"
    job_id = _post(service, submit, {"i": {"prompt": "warm up", "steps": 1}}, token)
    job_id = job_id["submitText2Image"]["id"]
    status = "query J($id: ID!) { job(id: $id) { status } }"

    def done() -> bool:
        current: str = _post(service, status, {"id": job_id}, token)["job"]["status"]
        return current == "SUCCEEDED"

    _wait_until(done, server, "a warm-up job", service.log)


@contextmanager
def running_service(root: Path) -> Iterator[Service]:
    """The fake Ollama and `stargraph serve --simulate` on free ports, stopped on exit."""
    ollama_port, port = free_port(), free_port()
    env = _service_env(root, ollama_port)
    log = root / "service.log"
    service = Service(url=f"http://127.0.0.1:{port}", log=log, env=env, root=root)
    try:
        ollama = _spawn(
            [sys.executable, "-m", "tests.fakes.ollama", "--port", str(ollama_port)], log, env, root
        )
        service.processes.append(ollama)
        _wait_until(lambda: _listening(ollama_port), ollama, "fake Ollama", log)
        serve = [sys.executable, "-m", "stargraph", "serve", "--simulate"]
        serve += ["--host", "127.0.0.1", "--port", str(port), "--sim-step-time", SIM_STEP_TIME]
        server = _spawn(serve, log, env, root)
        service.processes.append(server)
        _wait_until(lambda: _ready(service.url), server, "stargraph serve --simulate", log)
        _warm_up(service, server)
        yield service
    finally:
        for proc in reversed(service.processes):
            _stop(proc)
        if log.exists():
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(log, ARTIFACTS / f"service-{os.getpid()}.log")


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, through Playwright's driver; both ended on exit."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Screens:
    """Numbered full-page screenshots of one test, under test-artifacts/screenshots/."""

    page: Page
    prefix: str
    count: int = 0

    def __post_init__(self) -> None:
        for old in SCREENSHOTS.glob(f"{self.prefix}-[0-9][0-9]-*.png"):
            old.unlink()  # a previous run's steps would mix with this run's

    async def __call__(self, name: str) -> None:
        self.count += 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.prefix}-{self.count:02d}-{name}.png"
        await self.page.evaluate("window.scrollTo(0, 0)")  # the sticky header stays on top
        await self.page.screenshot(path=path, full_page=True)


@dataclass
class Session:
    """One browser tab on the service, with the UI steps tests share."""

    page: Page
    context: BrowserContext
    service: Service
    shot: Screens
    errors: list[str]

    async def open(self) -> Page:
        await self.page.goto(self.service.url + "/")
        return self.page

    async def token(self) -> str:
        return str(await self.page.evaluate("localStorage.getItem('stargraph.token')"))

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        """A GraphQL request with this page's token (what another client of the user sees)."""
        return await self.service.gql(query, variables, token=await self.token())

    async def wait_until_idle(self, timeout_s: float = 60) -> None:
        """Until no job waits or runs on the service (tests share it: one that counts queue
        positions must not find another test's jobs still there). A test-side wait: it polls."""
        for _ in range(int(timeout_s / 0.1)):
            queue = (await self.gql("{ queue { length running } }"))["queue"]
            if queue == {"length": 0, "running": 0}:
                return
            await asyncio.sleep(0.1)
        pytest.fail(f"the service still has jobs after {timeout_s} s: {queue}")

    async def sign_up(self, stem: str = "user") -> str:
        """Create an account through the sign-up form; returns the username."""
        username = f"{stem}_{uuid.uuid4().hex[:8]}"
        await self._auth("signup", username, PASSWORD)
        return username

    async def sign_in(self, username: str, password: str = PASSWORD) -> None:
        """Sign in to an existing account through the sign-in form."""
        await self._auth("signin", username, password)

    async def _auth(self, mode: str, username: str, password: str) -> None:
        page = self.page
        if not await page.get_by_test_id("auth-view").is_visible():
            await self.open()
        await page.get_by_test_id(f"auth-tab-{mode}").click()
        await page.get_by_test_id("auth-username").fill(username)
        await page.get_by_test_id("auth-password").fill(password)
        await page.get_by_test_id("auth-submit").click()
        status = page.get_by_test_id("connection-status")
        await expect(status).to_have_attribute("data-state", "open")
        await expect(page.get_by_test_id("user-name")).to_have_text(username)

    async def fill(self, prompt: str, **fields: str | int | float) -> None:
        """Type a prompt and set form fields by their test id (e.g. steps=30, count=2)."""
        page = self.page
        await page.get_by_test_id("prompt").fill(prompt)
        advanced = page.get_by_test_id("advanced")
        if not await advanced.evaluate("d => d.open"):
            await advanced.locator("summary").click()
        for name, value in fields.items():
            await page.get_by_test_id(name).fill(str(value))

    async def submit(self, prompt: str, **fields: str | int | float) -> Locator:
        """Fill the form, send it, and return the new job's card (found by its prompt)."""
        await self.fill(prompt, **fields)
        await self.page.get_by_test_id("submit-button").click()
        return await self.card(prompt)

    async def card(self, prompt: str) -> Locator:
        """The one job card showing `prompt`, pinned by its job id."""
        card = self.page.get_by_test_id("job-card").filter(has_text=prompt)
        await expect(card).to_have_count(1)
        job_id = await card.get_attribute("data-job-id")
        return self.page.locator(f'[data-testid="job-card"][data-job-id="{job_id}"]')

    async def events(self, job_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The live events the page received for one job (its own log, in arrival order)."""
        log = await self.page.evaluate("window.__stargraph.events")
        return [e for e in log if e["jobId"] == job_id and (kind is None or e["type"] == kind)]

    async def wait_step(self, card: Locator, at_least: int) -> None:
        """Wait until the card's progress bar shows step >= at_least."""
        await self.page.wait_for_function(
            """([id, n]) => {
              const card = document.querySelector(`[data-job-id="${id}"]`);
              const bar = card?.querySelector("[data-testid=job-progress]");
              return Number(bar?.dataset.step ?? 0) >= n;
            }""",
            arg=[await card.get_attribute("data-job-id"), at_least],
        )

    async def balance(self) -> tuple[int, int]:
        page = self.page
        available = await page.get_by_test_id("balance-available").get_attribute("data-value")
        frozen = await page.get_by_test_id("balance-frozen").get_attribute("data-value")
        return int(available or -1), int(frozen or -1)
