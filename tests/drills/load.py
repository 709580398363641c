"""Load for drills: users and jobs through the engine harness, and waiting on their progress."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from stargraph.domain.jobs import TERMINAL
from stargraph.domain.types import JobId
from stargraph.store.models import JobRow
from tests.drills.checks import unfinished
from tests.drills.processes import Process
from tests.engine.factory import make_job
from tests.engine.harness import Rig

ERROR_MARKER = "[simulate-error]"  # the simulator fails any prompt whose text carries it


async def submit_jobs(
    rig: Rig, *, users: int, jobs: int, steps: int, fail_every: int | None = None
) -> tuple[list[JobId], int]:
    """`jobs` QUEUED jobs (held and enqueued) from `users` users, taking turns; 1 or 2 images
    each. Every `fail_every`-th job fails in the simulator on purpose. Returns the ids and how
    many were made to fail."""
    owners = [await rig.user(f"drill{i}", 10_000) for i in range(users)]
    ids, failing = [], 0
    for i in range(jobs):
        prompt = "a lighthouse at dusk"
        if fail_every and i % fail_every == fail_every - 1:
            prompt, failing = f"a broken lighthouse {ERROR_MARKER}", failing + 1
        job = make_job(owners[i % users], seed=i + 1, steps=steps, count=1 + i % 2, prompt=prompt)
        ids.append((await rig.submit(job)).id)
    return ids, failing


async def terminal_count(job_ids: Sequence[str]) -> int:
    terminal = [s.value for s in TERMINAL]
    return await JobRow.filter(id__in=list(job_ids), status__in=terminal).count()


async def wait_terminal(
    job_ids: Sequence[str],
    *,
    at_least: int | None = None,
    alive: Sequence[Process] = (),
    within_s: float = 60.0,
    report: Callable[[], str] = str,
) -> int:
    """Wait until `at_least` of the jobs (default: all) are terminal; every process in `alive`
    must stay up meanwhile. Returns the terminal count."""
    target = len(job_ids) if at_least is None else min(at_least, len(job_ids))
    deadline = time.monotonic() + within_s
    while (done := await terminal_count(job_ids)) < target:
        for process in alive:
            assert process.alive, f"{process.log.name}: the process died on its own\n{report()}"
        if time.monotonic() > deadline:
            late = await unfinished(job_ids)
            raise AssertionError(
                f"{done}/{len(job_ids)} jobs terminal after {within_s} s; waiting for "
                f"{target}: {late[:10]}\n{report()}"
            )
        await asyncio.sleep(0.05)
    return done
