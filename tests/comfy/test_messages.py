"""The pure parser against every frame the real server sent, and the encoders against it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stargraph.comfy import encoding as enc
from stargraph.comfy import messages as m

from .recordings import (
    load_http,
    load_transcript,
    metadata_length,
    rebuild_binary,
    transcript_names,
)

EXPECTED_TYPES: dict[str, type] = {
    "status": m.Status,
    "execution_start": m.ExecutionStart,
    "execution_cached": m.ExecutionCached,
    "executing": m.Executing,
    "progress": m.Progress,
    "progress_state": m.ProgressState,
    "executed": m.Executed,
    "execution_success": m.ExecutionSuccess,
    "execution_error": m.ExecutionError,
    "execution_interrupted": m.ExecutionInterrupted,
    "feature_flags": m.FeatureFlags,
}
BINARY_TYPES = {1: m.PreviewImage, 3: m.Text, 4: m.PreviewImageWithMetadata}


def _frames(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, entry)
        for name in transcript_names()
        for entry in load_transcript(name)
        if entry["kind"] == kind
    ]


TEXT_FRAMES = _frames("ws_text")
BINARY_FRAMES = _frames("ws_binary")


def test_the_recordings_hold_every_modelled_type() -> None:
    seen = {entry["msg"]["type"] for _, entry in TEXT_FRAMES}
    assert seen == set(EXPECTED_TYPES)
    assert {entry["type"] for _, entry in BINARY_FRAMES} == set(BINARY_TYPES)


@pytest.mark.parametrize(
    ("name", "entry"), TEXT_FRAMES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_recorded_text_frame_parses_to_its_type(name: str, entry: dict[str, Any]) -> None:
    msg = entry["msg"]
    parsed = m.parse_text(json.dumps(msg))
    assert type(parsed) is EXPECTED_TYPES[msg["type"]]
    # Re-encoding gives the same fields back (ExecutionError is bounded, so only its keys).
    event_type, data = enc.event_data(parsed)
    assert event_type == msg["type"]
    if isinstance(parsed, m.ExecutionError):
        assert data.keys() == msg["data"].keys()
    else:
        assert data == msg["data"]


@pytest.mark.parametrize(
    ("name", "entry"), BINARY_FRAMES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_recorded_binary_frame_parses_to_its_type(name: str, entry: dict[str, Any]) -> None:
    frame = rebuild_binary(entry)
    assert len(frame) == entry["length"]
    parsed = m.parse_binary(frame)
    assert type(parsed) is BINARY_TYPES[entry["type"]]
    assert enc.encode(parsed) == frame
    if isinstance(parsed, m.PreviewImage):
        assert parsed.image_format == "jpeg"
        assert parsed.image[:4] == bytes.fromhex(entry["image_magic_hex"])
    elif isinstance(parsed, m.PreviewImageWithMetadata):
        assert metadata_length(entry) == len(json.dumps(entry["metadata"]))
        assert parsed.prompt_id == entry["metadata"]["prompt_id"]
        assert parsed.node_id == "3"
        assert parsed.mime_type == "image/jpeg"
        assert len(parsed.image) == entry["image_bytes"]
    else:
        assert isinstance(parsed, m.Text)
        assert (parsed.node_id, parsed.text) == (entry["node_id"], entry["text"])


def _first(name: str, event_type: str, **match: Any) -> dict[str, Any]:
    for entry in load_transcript(name):
        if entry["kind"] != "ws_text" or entry["msg"]["type"] != event_type:
            continue
        data = entry["msg"]["data"]
        if all(data.get(k) == v for k, v in match.items()):
            return dict(data)
    raise AssertionError(f"no {event_type} {match} in {name}")


def test_status_on_connect_carries_the_sid() -> None:
    parsed = m.parse_event("status", _first("a_normal_txt2img", "status"))
    assert parsed == m.Status(0, "cap-a-5c197e6c")


def test_executing_null_marks_the_end_of_a_prompt() -> None:
    parsed = m.parse_event("executing", _first("a_normal_txt2img", "executing", node=None))
    assert isinstance(parsed, m.Executing)
    assert parsed.is_prompt_done
    assert parsed.prompt_id == "a-c8f912dcf6a9"


def test_executing_after_reconnect_has_no_prompt_id() -> None:
    parsed = m.parse_event("executing", {"node": "3"})
    assert parsed == m.Executing(node="3")
    assert not parsed.is_prompt_done


def test_executed_lists_its_images() -> None:
    parsed = m.parse_event("executed", _first("a_normal_txt2img", "executed"))
    assert isinstance(parsed, m.Executed)
    assert parsed.images == (
        m.ImageRef("a_normal_00001_.png", "", "output"),
        m.ImageRef("a_normal_00002_.png", "", "output"),
    )


def test_executed_with_text_output_has_no_images() -> None:
    parsed = m.parse_event("executed", _first("t_text_frame_and_preview_any", "executed"))
    assert isinstance(parsed, m.Executed)
    assert parsed.images == ()
    assert parsed.output == {"text": ["64"]}


def test_execution_error_is_bounded_and_summarised() -> None:
    history = load_http("history_d_runtime_error")["d-upscale-cee62e9f6974"]
    (_, data), *_ = [msg for msg in history["status"]["messages"] if msg[0] == "execution_error"]
    assert len(json.dumps(data)) > 10_000
    parsed = m.parse_event("execution_error", data)
    assert isinstance(parsed, m.ExecutionError)
    assert len(json.dumps(enc.event_data(parsed)[1])) < 6_000
    assert parsed.node_id == "11"
    assert parsed.summary.startswith(
        "RuntimeError: Input and output sizes should be greater than 0"
    )
    assert parsed.summary.endswith("(node 11 LatentUpscaleBy)")
    assert len(parsed.traceback) <= m.MAX_TRACEBACK_FRAMES


def test_execution_blocked_shape_parses() -> None:
    data = {
        "prompt_id": "p",
        "node_id": "5",
        "node_type": "X",
        "executed": [],
        "exception_message": "blocked",
        "exception_type": "ExecutionBlocked",
        "traceback": [],
        "current_inputs": [],
        "current_outputs": [],
    }
    parsed = m.parse_event("execution_error", data)
    assert isinstance(parsed, m.ExecutionError)
    assert parsed.timestamp is None
    assert parsed.current_inputs is None


def test_feature_flags_reply() -> None:
    parsed = m.parse_event("feature_flags", load_http("features"))
    assert isinstance(parsed, m.FeatureFlags)
    assert parsed.supports_preview_metadata


def test_unknown_types_are_kept_not_rejected() -> None:
    parsed = m.parse_text('{"type": "logs", "data": {"entries": [], "size": 1}}')
    assert parsed == m.Unknown("logs", {"entries": [], "size": 1})
    assert m.parse_binary(b"\x00\x00\x00\x09abc") == m.UnknownBinary(9, b"abc")


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        "[1, 2]",
        '{"data": {}}',
        '{"type": "executing", "data": {}}',
        '{"type": "status", "data": {"status": {}}}',
        '{"type": "progress", "data": null}',
        '{"type": "executed", "data": {"node": "9", "output": {"images": [3]}}}',
    ],
)
def test_malformed_text_frames_raise(frame: str) -> None:
    with pytest.raises(m.MalformedFrame):
        m.parse_text(frame)


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00\x00",
        b"\x00\x00\x00\x01\x00",
        b"\x00\x00\x00\x04\x00\x00\x00\x10{}",
        b"\x00\x00\x00\x04\x00\x00\x00\x02[]",
        b"\x00\x00\x00\x03\x00\x00\x00\x05ab",
        b"\x00\x00\x00\x03\x00\x00\x00\x01\xff\xfe",
    ],
)
def test_malformed_binary_frames_raise(frame: bytes) -> None:
    with pytest.raises(m.MalformedFrame):
        m.parse_binary(frame)


def test_encoders_round_trip() -> None:
    samples: list[m.Message] = [
        m.Status(3),
        m.Status(0, "sid-1"),
        m.ExecutionStart("p", 1),
        m.ExecutionCached("p", ("4", "6"), 2),
        m.Executing("3", "p", "3"),
        m.Executing(None, "p"),
        m.Progress(2, 20, "p", "3"),
        m.ProgressState("p", (m.NodeProgress("3", 1, 4, "running", "3", None, "3"),)),
        m.Executed(
            "9",
            {"images": [{"filename": "a.png", "subfolder": "s", "type": "output"}]},
            (m.ImageRef("a.png", "s"),),
            "p",
            "9",
        ),
        m.ExecutionSuccess("p", 5),
        m.ExecutionInterrupted("p", "3", "KSampler", (), 6),
        m.FeatureFlags({"supports_preview_metadata": True}),
        m.PreviewImage("png", b"\x89PNG"),
        m.PreviewImageWithMetadata({"prompt_id": "p", "node_id": "3"}, b"img"),
        m.Text("2", "héllo"),
    ]
    for sample in samples:
        frame = enc.encode(sample)
        parsed = m.parse_binary(frame) if isinstance(frame, bytes) else m.parse_text(frame)
        assert parsed == sample
