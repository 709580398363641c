"""Every recorded scenario, replayed against the simulator, gives the recorded conversation.

Per socket: the same frames in the same order (`progress_state` aside), the same field sets,
and the same values where the value is determined by the scenario (node ids, steps, queue
sizes, cached node lists, error types...), but not timestamps, generated ids or file counters.
Per HTTP exchange: the same status, content type and JSON shape, with the same error types,
messages and details.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from stargraph.comfy.messages import PreviewImageWithMetadata, parse_binary
from stargraph.comfy.sim_config import Faults, SimulatorConfig
from stargraph.comfy.simulator import SimulatorHandle, running_simulator

from .recordings import load_transcript, transcript_names
from .replay import Exchange, Replayer, kept_frame, prime_cache

# Values the recording fixes; everything else is compared by shape only.
WS_VALUE_KEYS = frozenset(
    {"node", "display_node", "nodes", "value", "max", "queue_remaining", "node_id", "node_type",
     "executed", "exception_type", "exception_message", "prompt_id", "subfolder", "type",
     "supports_preview_metadata", "max_upload_size", "text"}
)  # fmt: skip
HTTP_VALUE_KEYS = frozenset(
    {"type", "message", "details", "class_type", "dependent_outputs", "status_str", "completed",
     "input_name", "received_value", "received_type", "exception_type", "linked_node",
     "prompt_id", "queue_remaining", "node_id", "node_type", "nodes", "executed"}
)  # fmt: skip

CONFIGS: dict[str, dict[str, Any]] = {
    "d_runtime_errors": {"corrupt_checkpoints": ("corrupt.safetensors",)},
    "g_previews_latent2rgb": {"previews": True},
}
SCENARIOS = [name for name in transcript_names() if name != "f4_explicit_number_followup"]


def shape(value: Any, keys: frozenset[str], key: str | None = None) -> Any:
    """A comparable skeleton: containers kept, scalars reduced to their kind unless `key` is
    one whose value the scenario fixes. Lists of scalars ignore their length."""
    if isinstance(value, dict):
        return {k: shape(v, keys, k) for k, v in value.items()}
    if key in keys:
        return value
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return "list of scalars"
        return [shape(v, keys) for v in value]
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    return "number" if isinstance(value, int | float) else type(value).__name__


def simulator_config(name: str) -> SimulatorConfig:
    options: dict[str, Any] = {"previews": False}
    options.update(CONFIGS.get(name, {}))
    return SimulatorConfig(
        step_time=0, manual_steps=True, faults=Faults(error_marker=None), **options
    )


async def prime_like_recording(handle: SimulatorHandle, entries: list[dict[str, Any]]) -> None:
    """The real server had run prompts before each scenario; seed the cache it had."""
    first = next((e for e in entries if e.get("msg", {}).get("type") == "execution_cached"), None)
    if first is None or not first["msg"]["data"]["nodes"]:
        return
    prompt_id = first["msg"]["data"]["prompt_id"]
    posted = next(
        e["json"]["prompt"]
        for e in entries
        if e["kind"] == "http_req" and (e.get("json") or {}).get("prompt_id") == prompt_id
    )
    await prime_cache(handle, posted, first["msg"]["data"]["nodes"])


async def replay(name: str) -> tuple[Replayer, list[dict[str, Any]]]:
    entries = load_transcript(name)
    async with running_simulator(simulator_config(name)) as handle:
        await prime_like_recording(handle, entries)
        replayer = Replayer(handle, entries)
        await replayer.run()
    return replayer, entries


def describe(frame: str | bytes) -> Any:
    if isinstance(frame, bytes):
        msg = parse_binary(frame)
        metadata = msg.metadata if isinstance(msg, PreviewImageWithMetadata) else None
        return ("binary", type(msg).__name__, None if metadata is None else sorted(metadata))
    data = json.loads(frame)
    return (data["type"], shape(data["data"], WS_VALUE_KEYS))


def describe_recorded(entry: dict[str, Any]) -> Any:
    if entry["kind"] == "ws_binary":
        names = {1: "PreviewImage", 3: "Text", 4: "PreviewImageWithMetadata"}
        metadata = entry.get("metadata")
        return ("binary", names[entry["type"]], None if metadata is None else sorted(metadata))
    return (entry["msg"]["type"], shape(entry["msg"]["data"], WS_VALUE_KEYS))


@pytest.mark.parametrize("name", SCENARIOS)
async def test_websocket_frames_match_the_recording(name: str) -> None:
    replayer, _ = await replay(name)
    assert replayer.expected or name == "http_dumps"
    for sock, recorded in replayer.expected.items():
        want = [describe_recorded(e) for e in recorded]
        got = [describe(f) for f in replayer.sockets[sock].frames if kept_frame(f)]
        assert got == want, f"socket {sock}"


def _check_exchange(exchange: Exchange) -> None:
    expected = exchange.expected
    assert expected is not None
    where = f"{exchange.request['method']} {exchange.request['path']}"
    assert exchange.status == expected["status"], where
    assert exchange.content_type == expected["content_type"], where
    if expected.get("json") is None:
        return
    assert shape(exchange.body, HTTP_VALUE_KEYS) == shape(expected["json"], HTTP_VALUE_KEYS), where
    if expected["path"] == "/queue" and exchange.request["method"] == "GET":
        for key in ("queue_running", "queue_pending"):
            got = [item[1] for item in exchange.body[key]]
            assert got == [item[1] for item in expected["json"][key]], f"{where} {key}"


@pytest.mark.parametrize("name", SCENARIOS)
async def test_http_answers_match_the_recording(name: str) -> None:
    replayer, entries = await replay(name)
    assert len(replayer.exchanges) == sum(1 for e in entries if e["kind"] == "http_req")
    for exchange in replayer.exchanges:
        _check_exchange(exchange)


async def test_explicit_numbers_run_lowest_first_ties_by_prompt_id() -> None:
    """f4 and its follow-up: numbers 1.5 and 5.0 (twice) queued behind a running prompt."""
    entries = load_transcript("f_queue_two_and_delete")
    followup = load_transcript("f4_explicit_number_followup")
    note = next(e for e in followup if e["kind"] == "note" and "order" in e)
    async with running_simulator(simulator_config("f")) as handle:
        await prime_like_recording(handle, entries)
        await Replayer(handle, entries).run()
        await handle.simulator.release_steps(None)
        await handle.simulator.wait_idle()
        history = handle.simulator.engine.history_items(max_items=4)
    assert list(history) == note["order"]
