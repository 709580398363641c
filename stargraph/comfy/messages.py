"""ComfyUI WebSocket vocabulary: typed messages, a pure parser, and the encoders the simulator uses.

Sans-I/O and free of StarGraph imports, so the domain may use it. Shapes follow
ComfyUI's WebSocket protocol as recorded from the real server (`tests/comfy/recordings/`):

    text frame   {"type": T, "data": {...}}      -> parse_text()   -> Status, Executing, ...
    binary frame >I event type, then a payload   -> parse_binary() -> PreviewImage, Text, ...

Unknown JSON event types become `Unknown` (ComfyUI nodes may send their own); a frame that is not
valid JSON, or a known type with missing fields, raises `MalformedFrame`. `Connected` and
`Disconnected` never travel on the wire: `comfy.connection` yields them around each socket's life.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

# Bounds for error payloads, which can carry a tensor's repr (12 KB seen) — protocol §3.11.
MAX_ERROR_MESSAGE_CHARS = 2000
MAX_TRACEBACK_FRAMES = 5
MAX_TRACEBACK_FRAME_CHARS = 400
MAX_CURRENT_INPUTS = 12
MAX_CURRENT_INPUT_CHARS = 200

PREVIEW_IMAGE = 1
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4
_IMAGE_FORMATS = {1: "jpeg", 2: "png"}


class MalformedFrame(ValueError):
    """A frame that does not follow the protocol (bad JSON, missing fields, short binary)."""


# --- JSON events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageRef:
    """One output file as ComfyUI names it; the three values are `/view`'s query."""

    filename: str
    subfolder: str = ""
    type: str = "output"


@dataclass(frozen=True, slots=True)
class Status:
    """Queue size (pending + running). `sid` is set only in the first frame after connecting."""

    queue_remaining: int
    sid: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionStart:
    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class ExecutionCached:
    """Nodes whose outputs are reused from the cache (empty when nothing is cached)."""

    prompt_id: str
    nodes: tuple[str, ...]
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class Executing:
    """A node starts; `node is None` means the prompt finished and its history is written.

    After a reconnect ComfyUI sends a bare `{"node": id}` with no prompt id (protocol §2.1).
    """

    node: str | None
    prompt_id: str | None = None
    display_node: str | None = None

    @property
    def is_prompt_done(self) -> bool:
        return self.node is None


@dataclass(frozen=True, slots=True)
class Progress:
    """One sampler step: `value` of `max` (1-based)."""

    value: float
    max: float
    prompt_id: str | None = None
    node: str | None = None


@dataclass(frozen=True, slots=True)
class NodeProgress:
    node_id: str
    value: float
    max: float
    state: str
    display_node_id: str | None = None
    parent_node_id: str | None = None
    real_node_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProgressState:
    """Every non-pending node's progress so far (newer servers; redundant with the others)."""

    prompt_id: str
    nodes: tuple[NodeProgress, ...]


@dataclass(frozen=True, slots=True)
class Executed:
    """A node produced UI output; `images` lists the files of `output["images"]`, if any.

    Cached output nodes repeat their *old* output, old filenames included (protocol §3.7).
    """

    node: str
    output: Mapping[str, Any]
    images: tuple[ImageRef, ...]
    prompt_id: str | None = None
    display_node: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionSuccess:
    """Sent *before* history is written: finish on `Executing(node=None)` instead."""

    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class ExecutionError:
    """A runtime failure. Text fields are truncated to bounded sizes when parsed."""

    prompt_id: str
    node_id: str | None
    node_type: str | None
    exception_message: str
    exception_type: str
    executed: tuple[str, ...] = ()
    traceback: tuple[str, ...] = ()
    current_inputs: Mapping[str, str] | None = None
    current_outputs: tuple[str, ...] = ()
    timestamp: int | None = None

    @property
    def summary(self) -> str:
        """One human-readable line: the exception and the node it came from."""
        where = f" (node {self.node_id} {self.node_type})" if self.node_id else ""
        return f"{self.exception_type}: {self.exception_message.strip()}{where}"


@dataclass(frozen=True, slots=True)
class ExecutionInterrupted:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    executed: tuple[str, ...] = ()
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class FeatureFlags:
    """The server's answer to a client's `feature_flags` handshake."""

    flags: Mapping[str, Any]

    @property
    def supports_preview_metadata(self) -> bool:
        return bool(self.flags.get("supports_preview_metadata", False))


@dataclass(frozen=True, slots=True)
class Unknown:
    """A well-formed JSON event of a type this module does not model (custom nodes, `logs`)."""

    type: str
    data: Any


# --- binary frames -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreviewImage:
    """Type 1: a sampler preview for a client that did not ask for metadata."""

    image_format: str
    image: bytes

    @property
    def mime_type(self) -> str:
        return f"image/{self.image_format}"


@dataclass(frozen=True, slots=True)
class PreviewImageWithMetadata:
    """Type 4: a preview with its prompt and node ids (clients announcing preview metadata)."""

    metadata: Mapping[str, Any]
    image: bytes

    @property
    def prompt_id(self) -> str | None:
        return _optional_str(self.metadata.get("prompt_id"))

    @property
    def node_id(self) -> str | None:
        return _optional_str(self.metadata.get("node_id"))

    @property
    def mime_type(self) -> str:
        return str(self.metadata.get("image_type", "image/jpeg"))


@dataclass(frozen=True, slots=True)
class Text:
    """Type 3: progress text a node broadcasts to every socket."""

    node_id: str
    text: str


@dataclass(frozen=True, slots=True)
class UnknownBinary:
    event_type: int
    payload: bytes


# --- markers from the connection -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """A socket is open. `reconnect` is true after the first time: reconcile what was missed."""

    client_id: str
    reconnect: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The socket is down (or could not be opened); the connection keeps trying."""

    reason: str


Message: TypeAlias = (
    Status
    | ExecutionStart
    | ExecutionCached
    | Executing
    | Progress
    | ProgressState
    | Executed
    | ExecutionSuccess
    | ExecutionError
    | ExecutionInterrupted
    | FeatureFlags
    | Unknown
    | PreviewImage
    | PreviewImageWithMetadata
    | Text
    | UnknownBinary
)
SocketEvent: TypeAlias = Message | Connected | Disconnected


# --- parsing -------------------------------------------------------------------------------


def parse_text(frame: str | bytes) -> Message:
    """Parse one text frame. Raises MalformedFrame when it is not a protocol event."""
    try:
        obj = json.loads(frame)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedFrame(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise MalformedFrame("a text frame must be an object with a string 'type'")
    return parse_event(obj["type"], obj.get("data"))


def parse_event(event_type: str, data: Any) -> Message:
    """Build the message for one `(type, data)` pair, as found in frames and history messages."""
    parser = _PARSERS.get(event_type)
    if parser is None:
        return Unknown(event_type, data)
    if not isinstance(data, Mapping):
        raise MalformedFrame(f"{event_type}: 'data' must be an object")
    try:
        return parser(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedFrame(f"{event_type}: {exc!r}") from exc


def parse_binary(frame: bytes) -> Message:
    """Parse one binary frame (big-endian uint32 event type first)."""
    if len(frame) < 4:
        raise MalformedFrame("binary frame shorter than its 4-byte type")
    (event_type,) = struct.unpack_from(">I", frame)
    body = frame[4:]
    if event_type == PREVIEW_IMAGE:
        (code,) = _unpack_u32(body, "preview image format")
        return PreviewImage(_IMAGE_FORMATS.get(code, "unknown"), bytes(body[4:]))
    if event_type == PREVIEW_IMAGE_WITH_METADATA:
        return _parse_preview_with_metadata(body)
    if event_type == TEXT:
        return _parse_text_frame(body)
    return UnknownBinary(event_type, bytes(body))


def images_of(output: Mapping[str, Any]) -> tuple[ImageRef, ...]:
    """The image files listed in a node's UI output (`executed` data, history outputs)."""
    images = output.get("images") or ()
    if not isinstance(images, list | tuple):
        raise MalformedFrame("output 'images' must be a list")
    return tuple(_image_ref(item) for item in images)


def _unpack_u32(body: bytes, what: str) -> tuple[int]:
    if len(body) < 4:
        raise MalformedFrame(f"binary frame too short for its {what}")
    return struct.unpack_from(">I", body)


def _parse_preview_with_metadata(body: bytes) -> PreviewImageWithMetadata:
    (length,) = _unpack_u32(body, "metadata length")
    raw = body[4 : 4 + length]
    if len(raw) < length:
        raise MalformedFrame("preview metadata cut short")
    try:
        metadata = json.loads(raw)
    except ValueError as exc:
        raise MalformedFrame(f"preview metadata is not JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise MalformedFrame("preview metadata must be an object")
    return PreviewImageWithMetadata(metadata, bytes(body[4 + length :]))


def _parse_text_frame(body: bytes) -> Text:
    (length,) = _unpack_u32(body, "node id length")
    node = body[4 : 4 + length]
    if len(node) < length:
        raise MalformedFrame("text frame node id cut short")
    try:
        return Text(node.decode(), bytes(body[4 + length :]).decode())
    except UnicodeDecodeError as exc:
        raise MalformedFrame(f"text frame is not UTF-8: {exc}") from exc


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _str_tuple(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise TypeError("expected a list")
    return tuple(str(v) for v in value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _image_ref(item: Any) -> ImageRef:
    if not isinstance(item, Mapping):
        raise MalformedFrame("an image entry must be an object")
    return ImageRef(
        str(item["filename"]), str(item.get("subfolder") or ""), str(item.get("type", "output"))
    )


def _status(d: Mapping[str, Any]) -> Status:
    remaining = d["status"]["exec_info"]["queue_remaining"]
    return Status(int(remaining), _optional_str(d.get("sid")))


def _execution_start(d: Mapping[str, Any]) -> ExecutionStart:
    return ExecutionStart(str(d["prompt_id"]), d.get("timestamp"))


def _execution_cached(d: Mapping[str, Any]) -> ExecutionCached:
    return ExecutionCached(str(d["prompt_id"]), _str_tuple(d["nodes"]), d.get("timestamp"))


def _executing(d: Mapping[str, Any]) -> Executing:
    return Executing(
        _optional_str(d["node"]),
        _optional_str(d.get("prompt_id")),
        _optional_str(d.get("display_node")),
    )


def _progress(d: Mapping[str, Any]) -> Progress:
    return Progress(
        d["value"], d["max"], _optional_str(d.get("prompt_id")), _optional_str(d.get("node"))
    )


def _node_progress(node_id: str, d: Mapping[str, Any]) -> NodeProgress:
    return NodeProgress(
        node_id=str(d.get("node_id", node_id)),
        value=d["value"],
        max=d["max"],
        state=str(d["state"]),
        display_node_id=_optional_str(d.get("display_node_id")),
        parent_node_id=_optional_str(d.get("parent_node_id")),
        real_node_id=_optional_str(d.get("real_node_id")),
    )


def _progress_state(d: Mapping[str, Any]) -> ProgressState:
    nodes = d["nodes"]
    return ProgressState(str(d["prompt_id"]), tuple(_node_progress(k, v) for k, v in nodes.items()))


def _executed(d: Mapping[str, Any]) -> Executed:
    output = d["output"] or {}
    if not isinstance(output, Mapping):
        raise TypeError("'output' must be an object")
    return Executed(
        node=str(d["node"]),
        output=output,
        images=images_of(output),
        prompt_id=_optional_str(d.get("prompt_id")),
        display_node=_optional_str(d.get("display_node")),
    )


def _execution_success(d: Mapping[str, Any]) -> ExecutionSuccess:
    return ExecutionSuccess(str(d["prompt_id"]), d.get("timestamp"))


def _bounded_inputs(value: Any) -> Mapping[str, str] | None:
    if not isinstance(value, Mapping):
        return None
    items = list(value.items())[:MAX_CURRENT_INPUTS]
    return {str(k): _clip(json.dumps(v, default=str), MAX_CURRENT_INPUT_CHARS) for k, v in items}


def _bounded_traceback(value: Any) -> tuple[str, ...]:
    frames = _str_tuple(value or [])[-MAX_TRACEBACK_FRAMES:]
    return tuple(_clip(frame, MAX_TRACEBACK_FRAME_CHARS) for frame in frames)


def _execution_error(d: Mapping[str, Any]) -> ExecutionError:
    return ExecutionError(
        prompt_id=str(d["prompt_id"]),
        node_id=_optional_str(d.get("node_id")),
        node_type=_optional_str(d.get("node_type")),
        exception_message=_clip(str(d.get("exception_message", "")), MAX_ERROR_MESSAGE_CHARS),
        exception_type=str(d.get("exception_type", "")),
        executed=_str_tuple(d.get("executed") or []),
        traceback=_bounded_traceback(d.get("traceback")),
        current_inputs=_bounded_inputs(d.get("current_inputs")),
        current_outputs=_str_tuple(d.get("current_outputs") or []),
        timestamp=d.get("timestamp"),
    )


def _execution_interrupted(d: Mapping[str, Any]) -> ExecutionInterrupted:
    return ExecutionInterrupted(
        prompt_id=str(d["prompt_id"]),
        node_id=_optional_str(d.get("node_id")),
        node_type=_optional_str(d.get("node_type")),
        executed=_str_tuple(d.get("executed") or []),
        timestamp=d.get("timestamp"),
    )


def _feature_flags(d: Mapping[str, Any]) -> FeatureFlags:
    return FeatureFlags(dict(d))


_PARSERS: dict[str, Callable[[Mapping[str, Any]], Message]] = {
    "status": _status,
    "execution_start": _execution_start,
    "execution_cached": _execution_cached,
    "executing": _executing,
    "progress": _progress,
    "progress_state": _progress_state,
    "executed": _executed,
    "execution_success": _execution_success,
    "execution_error": _execution_error,
    "execution_interrupted": _execution_interrupted,
    "feature_flags": _feature_flags,
}
