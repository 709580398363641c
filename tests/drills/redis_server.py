"""A private `redis-server` for one drill: started in a temp dir on a free port, restartable.

The shared Redis on 127.0.0.1:6379 serves every other test, so drills that restart or flush
Redis run their own server. It keeps nothing on disk, so a restart forgets every key (as a
Redis without persistence does after a crash).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SERVICES_REQUIRED
from tests.e2e.harness import free_port

START_TIMEOUT_S = 10.0


def redis_server_binary() -> str:
    """The `redis-server` program; skips (fails in CI) the test when it is not installed."""
    found = shutil.which("redis-server")
    if found is None:
        message = "redis-server is not installed (a private server is needed to restart it)"
        if SERVICES_REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return found


class RedisServer:
    """One `redis-server` process; `url` stays the same across restarts."""

    def __init__(self, workdir: Path) -> None:
        self._binary = redis_server_binary()
        self._workdir = workdir
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._spawn()
        await self._until_answering()

    def _spawn(self) -> None:
        command = [
            self._binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(self._workdir),
        ]  # fmt: skip
        with (self._workdir / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    async def _until_answering(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_tail()}")
            if await self._pong():
                return
            if loop.time() > deadline:
                raise RuntimeError(f"redis-server did not answer: {self.log_tail()}")
            await asyncio.sleep(0.02)

    async def _pong(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await reader.readline()).startswith(b"+PONG")
        finally:
            writer.close()

    async def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGKILL with `kill`, like a crash); all its data is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill() if kill else process.terminate()
        await asyncio.to_thread(process.wait, 10)

    async def restart(self, downtime_s: float = 0.0) -> None:
        """Crash and start again on the same port, empty; down for `downtime_s`."""
        await self.stop(kill=True)
        await asyncio.sleep(downtime_s)
        await self.start()

    def log_tail(self, chars: int = 2000) -> str:
        path = self._workdir / "redis.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""
