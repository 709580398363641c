"""Prompts for the tests: the seven-node txt2img graph of the recordings."""

from __future__ import annotations

import asyncio
from typing import Any

from stargraph.comfy.messages import Executing, SocketEvent
from stargraph.comfy.sim_config import RECORDED_CHECKPOINT


def t2i(
    text: str = "a photo of a cat",
    *,
    seed: int = 42,
    steps: int = 3,
    width: int = 64,
    height: int = 64,
    batch: int = 1,
    prefix: str = "t",
    checkpoint: str = RECORDED_CHECKPOINT,
    sampler: str = "euler",
    scheduler: str = "normal",
) -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": width, "height": height, "batch_size": batch},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": sampler,
                "scheduler": scheduler,
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["8", 0]}},
    }


async def collect_until_done(events: Any, prompt_id: str, limit: float = 10.0) -> list[SocketEvent]:
    """Events from an async iterator up to `executing` null of `prompt_id`."""
    seen: list[SocketEvent] = []
    async with asyncio.timeout(limit):
        async for event in events:
            seen.append(event)
            if isinstance(event, Executing) and event.node is None and event.prompt_id == prompt_id:
                return seen
    return seen
