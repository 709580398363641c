"""Encoders of ComfyUI WebSocket frames: the simulator's side of `comfy.messages`.

Sans-I/O, the inverse of `messages.parse_text` / `messages.parse_binary`. JSON events keep the
field order the real server uses (as recorded).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from typing import Any

from stargraph.comfy.messages import (
    PREVIEW_IMAGE,
    PREVIEW_IMAGE_WITH_METADATA,
    TEXT,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    FeatureFlags,
    Message,
    NodeProgress,
    PreviewImage,
    PreviewImageWithMetadata,
    Progress,
    ProgressState,
    Status,
    Text,
    Unknown,
    UnknownBinary,
)

_FORMAT_CODES = {"jpeg": 1, "png": 2}


def encode_json(event_type: str, data: Mapping[str, Any]) -> str:
    """One text frame, fields in the order given."""
    return json.dumps({"type": event_type, "data": data})


def encode_status(queue_remaining: int, sid: str | None = None) -> str:
    """A `status` frame; pass `sid` for the first frame after a socket connects."""
    data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": queue_remaining}}}
    if sid is not None:
        data["sid"] = sid
    return encode_json("status", data)


def encode_preview_image(image: bytes, image_format: str = "jpeg") -> bytes:
    """A type-1 frame: the format code, then the encoded image."""
    return struct.pack(">II", PREVIEW_IMAGE, _FORMAT_CODES[image_format]) + image


def encode_preview_image_with_metadata(image: bytes, metadata: Mapping[str, Any]) -> bytes:
    """A type-4 frame: metadata length, metadata JSON, then the encoded image."""
    raw = json.dumps(metadata).encode()
    return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(raw)) + raw + image


def encode_text(node_id: str, text: str) -> bytes:
    """A type-3 frame: node id length, node id, then the text."""
    node = node_id.encode()
    return struct.pack(">II", TEXT, len(node)) + node + text.encode()


def encode(message: Message) -> str | bytes:
    """The wire frame of a message (the inverse of parse_text / parse_binary)."""
    if isinstance(message, PreviewImage):
        return encode_preview_image(message.image, message.image_format)
    if isinstance(message, PreviewImageWithMetadata):
        return encode_preview_image_with_metadata(message.image, message.metadata)
    if isinstance(message, Text):
        return encode_text(message.node_id, message.text)
    if isinstance(message, UnknownBinary):
        return struct.pack(">I", message.event_type) + message.payload
    if isinstance(message, Status):
        return encode_status(message.queue_remaining, message.sid)
    event_type, data = event_data(message)
    return encode_json(event_type, data)


def event_data(message: Message) -> tuple[str, dict[str, Any]]:
    """`(type, data)` of a JSON message, fields in ComfyUI's order (as recorded)."""
    builder = _WIRE.get(type(message))
    if builder is None:
        raise TypeError(f"{type(message).__name__} is not a JSON event")
    return builder(message)


def _drop_none(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {key: value for key, value in pairs if value is not None}


def _wire_executing(m: Any) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {"node": m.node}
    data.update(_drop_none([("display_node", m.display_node), ("prompt_id", m.prompt_id)]))
    return "executing", data


def _wire_node_progress(n: NodeProgress, prompt_id: str) -> dict[str, Any]:
    return {
        "value": n.value,
        "max": n.max,
        "state": n.state,
        "node_id": n.node_id,
        "prompt_id": prompt_id,
        "display_node_id": n.display_node_id,
        "parent_node_id": n.parent_node_id,
        "real_node_id": n.real_node_id,
    }


def _wire_error(m: Any) -> tuple[str, dict[str, Any]]:
    data = {
        "prompt_id": m.prompt_id,
        "node_id": m.node_id,
        "node_type": m.node_type,
        "executed": list(m.executed),
        "exception_message": m.exception_message,
        "exception_type": m.exception_type,
        "traceback": list(m.traceback),
        "current_inputs": dict(m.current_inputs or {}),
        "current_outputs": list(m.current_outputs),
    }
    data.update(_drop_none([("timestamp", m.timestamp)]))
    return "execution_error", data


_WIRE: dict[type, Callable[[Any], tuple[str, dict[str, Any]]]] = {
    Status: lambda m: (
        "status",
        _drop_none(
            [("status", {"exec_info": {"queue_remaining": m.queue_remaining}}), ("sid", m.sid)]
        ),
    ),
    ExecutionStart: lambda m: (
        "execution_start",
        _drop_none([("prompt_id", m.prompt_id), ("timestamp", m.timestamp)]),
    ),
    ExecutionCached: lambda m: (
        "execution_cached",
        _drop_none(
            [("nodes", list(m.nodes)), ("prompt_id", m.prompt_id), ("timestamp", m.timestamp)]
        ),
    ),
    Executing: _wire_executing,
    Progress: lambda m: (
        "progress",
        _drop_none(
            [("value", m.value), ("max", m.max), ("prompt_id", m.prompt_id), ("node", m.node)]
        ),
    ),
    ProgressState: lambda m: (
        "progress_state",
        {
            "prompt_id": m.prompt_id,
            "nodes": {n.node_id: _wire_node_progress(n, m.prompt_id) for n in m.nodes},
        },
    ),
    Executed: lambda m: (
        "executed",
        _drop_none(
            [
                ("node", m.node),
                ("display_node", m.display_node),
                ("output", dict(m.output)),
                ("prompt_id", m.prompt_id),
            ]
        ),
    ),
    ExecutionSuccess: lambda m: (
        "execution_success",
        _drop_none([("prompt_id", m.prompt_id), ("timestamp", m.timestamp)]),
    ),
    ExecutionError: _wire_error,
    ExecutionInterrupted: lambda m: (
        "execution_interrupted",
        _drop_none(
            [
                ("prompt_id", m.prompt_id),
                ("node_id", m.node_id),
                ("node_type", m.node_type),
                ("executed", list(m.executed)),
                ("timestamp", m.timestamp),
            ]
        ),
    ),
    FeatureFlags: lambda m: ("feature_flags", dict(m.flags)),
    Unknown: lambda m: (m.type, m.data),
}
