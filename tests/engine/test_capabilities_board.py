"""What the backends offer: a worker asks them a few at a time and writes the answers to the
board; an API process that runs no worker learns the offer from the board."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from stargraph.domain.capabilities import Capabilities
from stargraph.domain.types import BackendId
from stargraph.engine.capabilities import PROBES_AT_ONCE, CapabilitiesBoard, CapabilitiesBook

FALLBACK = Capabilities(("fallback.safetensors",), (), ())
BACKENDS = [BackendId(f"http://b{n}") for n in range(100)]


def offer_of(backend: BackendId) -> Capabilities:
    return Capabilities(
        (f"{backend[-2:]}.safetensors", "shared.safetensors"), ("euler",), ("normal",)
    )


async def test_a_worker_asks_a_few_backends_at_a_time_and_an_api_process_reads_the_board(
    any_redis: Redis, redis_prefix: str
) -> None:
    asking, most = 0, 0

    async def fetch(backend: BackendId) -> Capabilities:
        nonlocal asking, most
        asking += 1
        most = max(most, asking)
        await asyncio.sleep(0)
        asking -= 1
        if backend == BACKENDS[0]:
            raise OSError("connection refused")
        return offer_of(backend)

    worker = CapabilitiesBook(FALLBACK, CapabilitiesBoard(any_redis, redis_prefix))
    api = CapabilitiesBook(FALLBACK, CapabilitiesBoard(any_redis, redis_prefix))
    assert api.current() == FALLBACK

    await worker.refresh(BACKENDS, fetch)
    await api.read_board(BACKENDS)

    assert 1 < most <= PROBES_AT_ONCE
    checkpoints = {f"{b[-2:]}.safetensors" for b in BACKENDS[1:]} | {"shared.safetensors"}
    assert set(api.current().checkpoints) == checkpoints
    assert api.current() == worker.current()
    assert api.of(BACKENDS[0]) is None and api.of(BACKENDS[1]) == offer_of(BACKENDS[1])
