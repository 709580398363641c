"""Fixtures: a simulator on a loopback port, a client and a socket talking to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stargraph.comfy.client import ComfyClient
from stargraph.comfy.sim_config import SimulatorConfig
from stargraph.comfy.simulator import SimulatorHandle, running_simulator

FAST = SimulatorConfig(step_time=0.002, preview_size=32)
MANUAL = SimulatorConfig(step_time=0, manual_steps=True, preview_size=32)


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    async with running_simulator(FAST) as handle:
        yield handle


@pytest.fixture
async def manual_sim() -> AsyncIterator[SimulatorHandle]:
    """Sampler steps advance only on `handle.simulator.release_steps()`."""
    async with running_simulator(MANUAL) as handle:
        yield handle


@pytest.fixture
async def client(sim: SimulatorHandle) -> AsyncIterator[ComfyClient]:
    async with ComfyClient(sim.url) as comfy:
        yield comfy
