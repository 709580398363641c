"""The ComfyUI simulator's server state: the prompt queue, one worker, history, timing records.

Mirrors protocol §0: one worker runs prompts strictly one at a time from a heap ordered by
`(number, prompt_id)`; queue, history, caches and the counter live in memory and a restart
forgets them (saved images stay, like files on disk).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stargraph.comfy.sim_config import Faults, SimulatorConfig
from stargraph.comfy.sim_graph import OutputCache
from stargraph.comfy.sim_hub import Hub
from stargraph.comfy.sim_images import OutputStore
from stargraph.comfy.sim_nodes import object_info
from stargraph.comfy.sim_run import Outcome, PromptRun, QueueItem, RunEnvironment
from stargraph.comfy.sim_validate import PromptRejected, validate_prompt


@dataclass
class PromptRecord:
    """Engine timing of one accepted prompt, on the `time.monotonic()` clock.

    `outcome`: queued → running → success | error | interrupted, or deleted (removed while
    pending) or lost (forgotten by a restart).
    """

    prompt_id: str
    posted_at: float
    started_at: float | None = None
    finished_at: float | None = None
    outcome: str = "queued"

    @property
    def busy_seconds(self) -> float:
        """Time the (simulated) GPU spent on this prompt."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else time.monotonic()
        return end - self.started_at


_UNLIMITED = 1 << 62


class StepTimes:
    """Each sampler step's length: `step_time`, spread by `step_jitter` (normal, within
    ±3 spreads, never below zero)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._mean = config.step_time
        self._jitter = config.step_jitter
        self._random = random.Random(config.jitter_seed)

    def next(self) -> float:
        if self._jitter <= 0:
            return self._mean
        spread = max(-3.0, min(3.0, self._random.gauss(0.0, 1.0))) * self._jitter
        return self._mean * max(0.0, 1.0 + spread)


class StepGate:
    """Manual sampler steps: each step waits for a token from `release`."""

    def __init__(self) -> None:
        self._tokens = 0
        self._changed = asyncio.Condition()
        self.waiting = False

    async def pass_step(self) -> None:
        async with self._changed:
            self.waiting = True
            self._changed.notify_all()
            try:
                await self._changed.wait_for(lambda: self._tokens > 0)
            finally:
                self.waiting = False
            self._tokens -= 1
            self._changed.notify_all()

    async def release(self, steps: int | None = 1) -> None:
        """Let `steps` more steps through; None opens the gate for good."""
        async with self._changed:
            self._tokens = _UNLIMITED if steps is None else self._tokens + steps
            self._changed.notify_all()

    async def wait_until_waiting(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.waiting)


class Engine:
    """Queue, worker and history of one simulated ComfyUI process."""

    def __init__(self, config: SimulatorConfig, faults: Faults, hub: Hub) -> None:
        self.config = config
        self.faults = faults
        self.hub = hub
        self.store = OutputStore()
        self.gate = StepGate()
        self.records: list[PromptRecord] = []
        self.post_times: list[float] = []  # every POST /prompt, accepted or not
        self.info = object_info(config)
        self._output_classes = frozenset(k for k, v in self.info.items() if v.get("output_node"))
        self._seq = itertools.count()
        self._step_times = StepTimes(config)
        self._worker: asyncio.Task[None] | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self.counter = 0
        self.history: dict[str, dict[str, Any]] = {}
        self.cache = OutputCache()
        self.run: PromptRun | None = None
        self._heap: list[tuple[float, str, int, QueueItem]] = []
        self._running: QueueItem | None = None
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._interrupt = False
        self._free_memory = False
        self._step_due = 0.0  # loop time the running sampler's current step ends

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name="comfy-sim-worker")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def restart(self) -> None:
        """Forget queue, history, cache and counter, as a process restart does."""
        await self.stop()
        for record in self.records:
            if record.outcome in ("queued", "running"):
                record.outcome = "lost"
                record.finished_at = record.finished_at or time.monotonic()
        self._reset_state()
        self.store.clear_temp()
        self.start()

    # queue ----------------------------------------------------------------------------------

    def post_prompt(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Handle a POST /prompt body; raises PromptRejected (400) or BrokenPrompt (500)."""
        number = self._number(body)
        if "prompt" not in body:
            error = {"type": "no_prompt", "message": "No prompt provided"}
            raise PromptRejected({**error, "details": "No prompt provided", "extra_info": {}})
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        checked = validate_prompt(prompt, self.info, body.get("partial_execution_targets"))
        extra = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        self._put(QueueItem(number, prompt_id, prompt, extra, checked.outputs))
        return {"prompt_id": prompt_id, "number": number, "node_errors": checked.node_errors}

    def _number(self, body: Mapping[str, Any]) -> float:
        if "number" in body:
            return float(body["number"])
        number = -self.counter if body.get("front") else self.counter
        self.counter += 1
        return number

    def _put(self, item: QueueItem) -> None:
        heapq.heappush(self._heap, (item.number, item.prompt_id, next(self._seq), item))
        self.records.append(PromptRecord(item.prompt_id, time.monotonic()))
        self._idle.clear()
        self._status()
        self._wakeup.set()

    def queue_remaining(self) -> int:
        return len(self._heap) + (1 if self._running is not None else 0)

    def queue_lists(self) -> dict[str, list[Any]]:
        running = [] if self._running is None else [self._running.as_list()]
        return {"queue_running": running, "queue_pending": [e[3].as_list() for e in self._heap]}

    def delete_pending(self, prompt_ids: list[str]) -> None:
        for prompt_id in prompt_ids:
            for index, entry in enumerate(self._heap):
                if entry[1] == prompt_id:
                    self._heap.pop(index)
                    heapq.heapify(self._heap)
                    self._mark(prompt_id, "queued", "deleted")
                    self._status()
                    break

    def clear_pending(self) -> None:
        for entry in self._heap:
            self._mark(entry[1], "queued", "deleted")
        self._heap.clear()
        self._status()

    def interrupt(self, prompt_id: str | None) -> None:
        """Interrupt the running prompt (any, when `prompt_id` is None); pending ones are kept."""
        if prompt_id is None or (
            self._running is not None and self._running.prompt_id == prompt_id
        ):
            self._interrupt = True

    def free(self, free_memory: bool) -> None:
        if free_memory:
            self._free_memory = True
            if self._running is None:
                self.cache.clear()

    @property
    def running_client_id(self) -> str | None:
        return None if self._running is None else self._running.client_id

    @property
    def current_node(self) -> str | None:
        return None if self.run is None else self.run.current_node

    def _status(self) -> None:
        data = {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}
        self.hub.emit_json("status", data, None)

    def _mark(self, prompt_id: str, was: str, now: str) -> None:
        for record in reversed(self.records):
            if record.prompt_id == prompt_id and record.outcome == was:
                record.outcome = now
                record.finished_at = time.monotonic() if now != "running" else None
                if now == "running":
                    record.started_at = time.monotonic()
                return

    # history --------------------------------------------------------------------------------

    def history_items(self, max_items: int | None = None, offset: int = -1) -> dict[str, Any]:
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        out: dict[str, Any] = {}
        for index, (key, entry) in enumerate(self.history.items()):
            if index >= offset:
                out[key] = entry
                if max_items is not None and len(out) >= max_items:
                    break
        return out

    def delete_history(self, prompt_ids: list[str]) -> None:
        for prompt_id in prompt_ids:
            self.history.pop(prompt_id, None)

    def _store_history(self, item: QueueItem, outcome: Outcome) -> None:
        success = outcome.status == "success"
        meta = {
            node: {"node_id": node, "display_node": node, "parent_node": None, "real_node_id": node}
            for node in outcome.ui
        }
        self.history[item.prompt_id] = {
            "prompt": item.as_list(scrub=True),
            "outputs": outcome.ui,
            "status": {
                "status_str": "success" if success else "error",
                "completed": success,
                "messages": outcome.messages,
            },
            "meta": meta,
        }
        if len(self.history) > self.config.history_size:
            self.history.pop(next(iter(self.history)))

    # the worker -----------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            item = await self._take()
            await self._execute(item)
            # ComfyUI's worker thread hands its frames to the server's loop, which sends them
            # while the next prompt starts: the publisher runs before the next prompt does.
            await asyncio.sleep(0)

    async def wait_idle(self) -> None:
        """Until nothing runs and nothing waits."""
        await self._idle.wait()

    async def _take(self) -> QueueItem:
        while not self._heap:
            self._idle.set()
            self._wakeup.clear()
            await self._wakeup.wait()
        item = heapq.heappop(self._heap)[3]
        self._running = item
        self._status()
        if self._free_memory:
            self.cache.clear()
            self._free_memory = False
        return item

    async def _execute(self, item: QueueItem) -> None:
        self._mark(item.prompt_id, "queued", "running")
        self._interrupt = False
        if self.faults.start_delay > 0:
            await asyncio.sleep(self.faults.start_delay)
        self.run = PromptRun(self._environment(), item, fail=self._take_failure())
        outcome = await self.run.execute()
        self._running = None
        self.run = None
        self._store_history(item, outcome)
        self._mark(item.prompt_id, "running", outcome.status)
        self._status()
        if item.client_id is not None:
            data = {"node": None, "prompt_id": item.prompt_id}
            self.hub.emit_json("executing", data, item.client_id)

    def _take_failure(self) -> bool:
        if self.faults.fail_prompts <= 0:
            return False
        self.faults.fail_prompts -= 1
        return True

    def _environment(self) -> RunEnvironment:
        return RunEnvironment(
            config=self.config,
            faults=self.faults,
            hub=self.hub,
            store=self.store,
            cache=self.cache,
            output_nodes=self._output_classes,
            interrupted=lambda: self._interrupt,
            wait_step=self._wait_step,
        )

    async def _wait_step(self, first: bool) -> None:
        if self.config.manual_steps:
            await self.gate.pass_step()
        elif self.config.step_time > 0:
            # Each step is due one step time after the one before it, not after this task
            # woke up: a busy event loop delays a step, never the steps after it. (Sleeping
            # from the wake-up would let simulators that share a loop drift into lockstep.)
            now = asyncio.get_running_loop().time()
            self._step_due = (now if first else self._step_due) + self._step_times.next()
            await asyncio.sleep(max(0.0, self._step_due - now))
        else:
            await asyncio.sleep(0)
