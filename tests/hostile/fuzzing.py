"""Driving Hypothesis against a live world: each generated request is sent and judged.

Hypothesis is used as a generator here: problems are collected by the world (one example per
kind) rather than raised, so one run reports every kind of problem it met, and the server's
state, which moves on with every request, never has to be replayed for shrinking.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.hostile.loop import LoopThread
from tests.hostile.world import World

SCALE = float(os.environ.get("STARGRAPH_FUZZ_SCALE", "1"))


def scaled(examples: int) -> int:
    """`STARGRAPH_FUZZ_SCALE=0.1` runs a tenth of every fuzz test (for a quick local look)."""
    return max(1, round(examples * SCALE))


def drive(
    loop: LoopThread,
    strategy: st.SearchStrategy[Any],
    examples: int,
    send: Callable[[Any], Any],
) -> None:
    """Draw `examples` values from `strategy` and run `send(value)` on the world's loop."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(value=strategy)
    def one(value: Any) -> None:
        loop.run(send(value))

    one()


def expect_clean(world: World, loop: LoopThread, planned: int) -> None:
    loop.run(world.check_audit())
    print(f"{world.sent} requests; outcomes by root field:")  # shown with -s or -rP
    for outcome, count in sorted(world.outcomes.items()):
        print(f"  {count:6d}  {outcome}")
    assert world.sent >= planned, f"only {world.sent} of {planned} requests were generated"
    assert not world.problems, world.report()
