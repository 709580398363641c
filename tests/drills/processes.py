"""StarGraph processes for drills: `python -m stargraph.worker` (or `stargraph serve`) with
the drill's database, Redis and simulated backends in its environment."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stargraph.settings import PROJECT_ROOT

_START = "===== start"  # heads each run's output in the shared log


@dataclass(frozen=True)
class StackEnv:
    """What every process of one drill shares."""

    database_url: str
    redis_url: str
    prefix: str
    backends: Sequence[str]
    storage: Path
    extra: Mapping[str, str] = field(default_factory=dict)

    def environ(self, **more: str) -> dict[str, str]:
        values = {
            "STARGRAPH_DATABASE_URL": self.database_url,
            "STARGRAPH_REDIS_URL": self.redis_url,
            "STARGRAPH_REDIS_PREFIX": self.prefix,
            "STARGRAPH_COMFYUI_URLS": ",".join(self.backends),
            "STARGRAPH_STORAGE_DIR": str(self.storage),
            "STARGRAPH_LOG_LEVEL": "INFO",
        }
        return {**os.environ, **values, **self.extra, **more}


class Process:
    """One child process, its output appended to `log` (shared by its restarts)."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self._argv = list(argv)
        self._env = dict(env)
        self.log = log
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        assert self._popen is None or self._popen.poll() is not None, "already running"
        with self.log.open("ab") as out:
            out.write(f"\n{_START} {' '.join(self._argv[1:])}\n".encode())
            out.flush()
            self._popen = subprocess.Popen(
                self._argv, cwd=PROJECT_ROOT, env=self._env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int:
        assert self._popen is not None
        return self._popen.pid

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    async def up(self, marker: str, within_s: float = 30.0) -> None:
        """Wait until this run's output shows `marker`: a process signalled before it has set
        up its handlers dies of the signal, whatever it would have done with it."""
        deadline = time.monotonic() + within_s
        while marker not in self.log.read_text(errors="replace").rsplit(_START, 1)[-1]:
            assert self.alive, f"exited with {self.exit_code} before {marker!r}\n{self.tail()}"
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {marker!r} within {within_s} s\n{self.tail()}")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL and reap: no handler, no clean-up, like a power cut."""
        assert self._popen is not None
        self._popen.send_signal(signal.SIGKILL)
        self._popen.wait()

    async def terminate(self, within_s: float = 30.0) -> int:
        """SIGTERM and wait for the exit; the exit status (SIGKILL after `within_s`)."""
        assert self._popen is not None
        self._popen.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self._popen.wait, within_s)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            await asyncio.to_thread(self._popen.wait)
            raise

    async def stop_quietly(self) -> None:
        """Clean-up at the end of a test: whatever state it is in, it is gone after."""
        if self.alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await self.terminate(10)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def worker_process(env: StackEnv, log: Path, **more: str) -> Process:
    """`python -m stargraph.worker`, the worker process of `stargraph worker`."""
    return Process([sys.executable, "-m", "stargraph.worker"], env.environ(**more), log)


def serve_process(env: StackEnv, log: Path, port: int, **more: str) -> Process:
    """`stargraph serve` (API and worker in one process) on 127.0.0.1:`port`."""
    argv = [sys.executable, "-m", "stargraph", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return Process(argv, env.environ(**more), log)
