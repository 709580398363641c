"""What a process reports about the whole system: the engines as the API shows them, and
the figures that readiness checks and metrics read from the database."""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise import connections
from tortoise.functions import Count

from stargraph.domain.backends import BackendStatus
from stargraph.domain.jobs import JobStatus
from stargraph.store.convert import aware
from stargraph.store.models import JobRow
from stargraph.worker import Engine


class EngineView:
    """The engines as the API shows them: this process's pool when the worker runs here,
    else the board the workers publish to Redis."""

    def __init__(self, engine: Engine, local: bool) -> None:
        self._engine = engine
        self._local = local

    async def backends(self) -> list[BackendStatus]:
        if self._local:
            return self._engine.backends()
        config = self._engine.config
        return await self._engine.board.read(config.backends, config.max_inflight)

    async def running(self) -> int:
        """Jobs running right now, on any backend."""
        return await JobRow.filter(status=JobStatus.RUNNING.value).count()


async def jobs_by_status() -> dict[str, int]:
    """How many jobs are in each status (every status listed, zeros included)."""
    rows = await JobRow.annotate(n=Count("id")).group_by("status").values_list("status", "n")
    counts = {status.value: 0 for status in JobStatus}
    counts.update({str(status): int(n) for status, n in rows})
    return counts


class FinishedRuns:
    """Run times of the jobs that succeeded since the previous scrape, read from the jobs
    table, so any process (API or worker) can export them."""

    def __init__(self) -> None:
        self._since = datetime.now(UTC)

    async def since_last(self) -> list[tuple[str, float]]:
        rows = await JobRow.filter(
            status=JobStatus.SUCCEEDED.value, finished_at__gt=self._since
        ).values_list("backend", "started_at", "finished_at")
        runs = []
        for backend, started, finished in rows:
            start, end = aware(started), aware(finished)
            if end is None:  # never: finished_at__gt leaves out rows without an end
                continue
            self._since = max(self._since, end)
            if backend and start:
                runs.append((str(backend), (end - start).total_seconds()))
        return runs


async def ping_database() -> None:
    """One round trip to the database; raises when it cannot be reached."""
    await connections.get("default").execute_query("SELECT 1")
