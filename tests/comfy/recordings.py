"""Access to the recordings of the real ComfyUI server (copied from shared/reference/comfyui).

Each transcript line is one observation: `ws_open`, `ws_text` (a parsed `msg`), `ws_binary`
(header and details; the image bytes of type-1 frames are in `preview-plain.jpg`), `ws_send`,
`ws_close`, `http_req`, `http_resp`, or `note`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent / "recordings"
TRANSCRIPTS = ROOT / "transcripts"
HTTP = ROOT / "http"
PREVIEW_JPEG = TRANSCRIPTS / "preview-plain.jpg"


def transcript_names() -> list[str]:
    return sorted(p.stem for p in TRANSCRIPTS.glob("*.jsonl"))


def load_transcript(name: str) -> list[dict[str, Any]]:
    lines = (TRANSCRIPTS / f"{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def load_http(name: str) -> Any:
    return json.loads((HTTP / f"{name}.json").read_text())


def rebuild_binary(entry: dict[str, Any]) -> bytes:
    """The wire bytes of a recorded binary frame (the recorder kept its header and details)."""
    header = bytes.fromhex(entry["header_hex"])
    kind = entry["type"]
    if kind == 3:
        node_id: str = entry["node_id"]
        text: str = entry["text"]
        return header + node_id.encode() + text.encode()
    image = _image_of(entry)
    if kind == 4:
        return header + json.dumps(entry["metadata"]).encode() + image
    return header + image


def _image_of(entry: dict[str, Any]) -> bytes:
    jpeg = PREVIEW_JPEG.read_bytes()
    size: int = entry["image_bytes"]
    if len(jpeg) == size:
        return jpeg
    # A frame whose image was not saved: keep the recorded magic, pad to the recorded length.
    magic = bytes.fromhex(entry["image_magic_hex"])
    return magic + b"\x00" * (size - len(magic))


def metadata_length(entry: dict[str, Any]) -> int:
    return int(struct.unpack(">I", bytes.fromhex(entry["header_hex"])[4:8])[0])
