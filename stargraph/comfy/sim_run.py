"""One prompt's execution in the ComfyUI simulator, emitting what the real server emits (§2.5).

    execution_start, execution_cached, then per node: [progress_state] executing [progress…]
    [executed] [progress_state]; then execution_success | execution_error | execution_interrupted.

Routing per protocol §2.2: start/cached/executing/executed/success/error go only to the
prompt's client (not at all without one); progress, progress_state, previews and interrupted go
to the client, or to every socket when the prompt has no client id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stargraph.comfy.sim_config import Faults, SimulatorConfig
from stargraph.comfy.sim_graph import (
    CachedNode,
    CycleError,
    OutputCache,
    execution_order,
    is_link,
    signatures,
)
from stargraph.comfy.sim_hub import Hub
from stargraph.comfy.sim_images import OutputStore, Picture, render_preview, temp_prefix
from stargraph.comfy.sim_nodes import NODE_FUNCTIONS, SAMPLER_CLASSES, NodeFailure, NodeResult

logger = logging.getLogger(__name__)


@dataclass
class QueueItem:
    """One queued prompt, as `/queue` and `/history` show it (a 5-element list)."""

    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    @property
    def client_id(self) -> str | None:
        value = self.extra_data.get("client_id")
        return None if value is None else str(value)

    def as_list(self, scrub: bool = False) -> list[Any]:
        extra = self.extra_data
        if scrub:
            secret = ("auth_token_comfy_org", "api_key_comfy_org")
            extra = {k: v for k, v in extra.items() if k not in secret}
        return [self.number, self.prompt_id, self.prompt, extra, self.outputs]


@dataclass
class Outcome:
    """What history records about a finished prompt."""

    status: str = "success"  # success | error | interrupted
    messages: list[list[Any]] = field(default_factory=list)
    ui: dict[str, Any] = field(default_factory=dict)


class Interrupted(Exception):
    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.node_id = node_id


@dataclass
class RunEnvironment:
    """What a run borrows from its engine."""

    config: SimulatorConfig
    faults: Faults
    hub: Hub
    store: OutputStore
    cache: OutputCache
    output_nodes: frozenset[str]  # class types that are output nodes
    interrupted: Callable[[], bool]
    wait_step: Callable[[bool], Any]  # async: one sampler step of time (or the manual gate);
    # True for a sampler's first step, whose time is counted from now


def _now_ms() -> int:
    return int(time.time() * 1000)


class PromptRun:
    """Runs one QueueItem to its end. Implements `sim_nodes.NodeContext` for the nodes."""

    def __init__(self, env: RunEnvironment, item: QueueItem, fail: bool) -> None:
        self.env = env
        self.item = item
        self.prompt = item.prompt
        self.config = env.config
        self.outcome = Outcome()
        self.current_node: str | None = None
        self._fail = fail
        self._fail_node: str | None = None
        self._values: dict[str, tuple[Any, ...]] = {}
        self._executed: list[str] = []
        self._states: dict[str, dict[str, Any]] = {}
        self._keys: dict[str, str] = {}

    async def execute(self) -> Outcome:
        pid = self.item.prompt_id
        self._record("execution_start", {"prompt_id": pid, "timestamp": _now_ms()})
        keys = self._keys = signatures(self.prompt)
        self.env.cache.keep_only(set(keys.values()))
        cached = [n for n in self.prompt if self.env.cache.get(keys[n]) is not None]
        self._record(
            "execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": _now_ms()}
        )
        try:
            await self._run_nodes(keys, set(cached))
        except Interrupted as stop:
            self._interrupted(stop.node_id)
        except NodeFailure as failure:
            self._failed(failure)
        except Exception as exc:  # a simulator bug must not kill the worker: report it
            logger.exception("simulated prompt %s crashed", pid)
            self._failed(NodeFailure(type(exc).__name__, str(exc)))
        else:
            self._record("execution_success", {"prompt_id": pid, "timestamp": _now_ms()})
        return self.outcome

    async def _run_nodes(self, keys: dict[str, str], cached: set[str]) -> None:
        output_ids = {n for n, v in self.prompt.items() if v["class_type"] in self.env.output_nodes}
        try:
            order = execution_order(self.prompt, self.item.outputs, cached, output_ids)
        except CycleError as cycle:
            self.current_node = cycle.node_id
            raise NodeFailure("RuntimeError", "Dependency cycle detected") from None
        self._fail_node = self._failing_node(order, cached) if self._fail else None
        for node_id in order:
            if self.env.interrupted():
                raise Interrupted(node_id)
            entry = self.env.cache.get(keys[node_id]) if node_id in cached else None
            if entry is not None:
                self._replay(node_id, entry)
            else:
                await self._run_node(node_id, keys[node_id])

    def _failing_node(self, order: list[str], cached: set[str]) -> str | None:
        target = self.env.faults.fail_node
        runs = [n for n in order if n not in cached] or order
        for node_id in runs:
            class_type = self.prompt[node_id]["class_type"]
            if target in (node_id, class_type) or (
                target is None and class_type in SAMPLER_CLASSES
            ):
                return node_id
        return None if target is not None else runs[0]

    def _replay(self, node_id: str, entry: CachedNode) -> None:
        self._values[node_id] = entry.outputs
        if entry.ui is not None:
            self.outcome.ui[node_id] = entry.ui
            self._executed_event(node_id, entry.ui)
        self._state(node_id, 1, 1, "finished")

    async def _run_node(self, node_id: str, key: str) -> None:
        class_type = self.prompt[node_id]["class_type"]
        self.current_node = node_id
        self._state(node_id, 0.0, 1.0, "running")
        self._client_only(
            "executing",
            {"node": node_id, "display_node": node_id, "prompt_id": self.item.prompt_id},
        )
        inputs = self._inputs(node_id)
        self._check_marker(inputs)
        self._check_fault(node_id, None)
        result: NodeResult = await NODE_FUNCTIONS[class_type](self, inputs)
        self._values[node_id] = result.outputs
        self._executed.append(node_id)
        self.env.cache.put(key, CachedNode(result.outputs, result.ui))
        if result.ui is not None:
            self.outcome.ui[node_id] = result.ui
            self._executed_event(node_id, result.ui)
        done = self._states[node_id]
        self._state(node_id, done["value"] or 1.0, done["max"], "finished")

    def _inputs(self, node_id: str) -> dict[str, Any]:
        resolved = {}
        for name, value in self.prompt[node_id].get("inputs", {}).items():
            if is_link(value):
                resolved[name] = self._output(value[0])[int(value[1])]
            else:
                resolved[name] = value
        return resolved

    def _output(self, node_id: str) -> tuple[Any, ...]:
        if node_id not in self._values:  # a cached node the order skipped
            entry = self.env.cache.get(self._keys[node_id])
            if entry is None:
                raise KeyError(node_id)
            self._values[node_id] = entry.outputs
        return self._values[node_id]

    def _check_marker(self, inputs: dict[str, Any]) -> None:
        marker = self.env.faults.error_marker
        for name, value in inputs.items():
            if marker and isinstance(value, str) and marker in value:
                raise NodeFailure("RuntimeError", f"simulated failure: marker in input '{name}'")

    def _check_fault(self, node_id: str, step: int | None) -> None:
        """Raise the injected failure at its node: before it runs, or after step `fail_at_step`."""
        if node_id != self._fail_node:
            return
        faults = self.env.faults
        samples = self.prompt[node_id]["class_type"] in SAMPLER_CLASSES
        at_start = not faults.fail_at_step or not samples
        if (step is None and at_start) or (step is not None and step == faults.fail_at_step):
            raise NodeFailure(faults.fail_exception_type, faults.fail_message)

    # NodeContext ----------------------------------------------------------------------------

    async def spend(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def sample(self, steps: int, latent: Picture) -> None:
        node_id = self.current_node or ""
        for step in range(1, steps + 1):
            await self.env.wait_step(step == 1)
            if self.env.interrupted():
                raise Interrupted(node_id)
            self._state(node_id, step, steps, "running")
            preview = self._preview(latent, step)
            if preview is not None:
                self._preview_event(node_id, preview, "metadata")
            data = {"value": step, "max": steps, "prompt_id": self.item.prompt_id, "node": node_id}
            self.env.hub.emit_json("progress", data, self.item.client_id)
            if preview is not None:
                self._preview_event(node_id, preview, "plain")
            self._check_fault(node_id, step)

    async def send_text(self, text: str) -> None:
        self.env.hub.emit_text(self.current_node or "", text)

    def save_images(self, picture: Picture, prefix: str, kind: str) -> list[dict[str, str]]:
        chunks: list[tuple[str, str]] = []
        if kind == "output":
            chunks.append(("prompt", json.dumps(self.prompt)))
            for key, value in (self.item.extra_data.get("extra_pnginfo") or {}).items():
                chunks.append((str(key), json.dumps(value)))
        else:
            prefix = temp_prefix()
        try:
            return self.env.store.save(picture, prefix, kind, tuple(chunks))
        except Exception as exc:
            raise NodeFailure("Exception", str(exc)) from exc

    # events ---------------------------------------------------------------------------------

    def _preview(self, latent: Picture, step: int) -> bytes | None:
        if not self.config.previews:
            return None
        return render_preview(latent, step, self.config.preview_size)

    def _preview_event(self, node_id: str, image: bytes, variant: Any) -> None:
        metadata = {
            "node_id": node_id,
            "prompt_id": self.item.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
            "image_type": "image/jpeg",
        }
        self.env.hub.emit_preview(image, metadata, self.item.client_id, variant)

    def _state(self, node_id: str, value: float, maximum: float, state: str) -> None:
        self._states[node_id] = {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": node_id,
            "prompt_id": self.item.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        data = {"prompt_id": self.item.prompt_id, "nodes": dict(self._states)}
        self.env.hub.emit_json("progress_state", data, self.item.client_id)

    def _executed_event(self, node_id: str, ui: dict[str, Any]) -> None:
        data = {
            "node": node_id,
            "display_node": node_id,
            "output": ui,
            "prompt_id": self.item.prompt_id,
        }
        self._client_only("executed", data)

    def _client_only(self, event: str, data: dict[str, Any]) -> None:
        if self.item.client_id is not None:
            self.env.hub.emit_json(event, data, self.item.client_id)

    def _record(self, event: str, data: dict[str, Any]) -> None:
        """An event that history keeps in `status.messages`."""
        self.outcome.messages.append([event, data])
        self._client_only(event, data)

    def _interrupted(self, node_id: str) -> None:
        self.outcome.status = "interrupted"
        data = {
            "prompt_id": self.item.prompt_id,
            "node_id": node_id,
            "node_type": self.prompt[node_id]["class_type"],
            "executed": list(self._executed),
            "timestamp": _now_ms(),
        }
        self.outcome.messages.append(["execution_interrupted", data])
        self.env.hub.emit_json("execution_interrupted", data, self.item.client_id)

    def _failed(self, failure: NodeFailure) -> None:
        self.outcome.status = "error"
        node_id = self.current_node or ""
        class_type = self.prompt.get(node_id, {}).get("class_type", "")
        data = {
            "prompt_id": self.item.prompt_id,
            "node_id": node_id,
            "node_type": class_type,
            "executed": list(self._executed),
            "exception_message": failure.message + "\n",
            "exception_type": failure.exception_type,
            "traceback": [
                f'  File "stargraph/comfy/sim_nodes.py", in {class_type}\n    (simulated)\n'
            ],
            "current_inputs": _current_inputs(self._safe_inputs(node_id)),
            "current_outputs": list(self.prompt),
            "timestamp": _now_ms(),
        }
        self._record("execution_error", data)

    def _safe_inputs(self, node_id: str) -> dict[str, Any]:
        try:
            return self._inputs(node_id)
        except (KeyError, IndexError):
            return {}


def _current_inputs(inputs: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        name: [value if isinstance(value, int | float | str) else repr(value)]
        for name, value in inputs.items()
    }
