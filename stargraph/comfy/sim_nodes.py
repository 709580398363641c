"""The node classes the ComfyUI simulator knows: their recorded definitions and what they do.

Definitions come from the recorded `/object_info` (`sim_nodes.json`); the checkpoint, sampler and
scheduler lists are the simulator's configuration. Behaviour is a stand-in: a checkpoint is a
name, a latent or an image is a `Picture` (size, batch, seed), and sampling is waiting.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from stargraph.comfy.sim_config import SimulatorConfig
from stargraph.comfy.sim_images import Picture

_DEFINITIONS = Path(__file__).with_name("sim_nodes.json")


class NodeFailure(Exception):
    """A runtime error of a node, reported as `execution_error`."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


class NodeContext(Protocol):
    """What a running node may ask of the engine."""

    @property
    def config(self) -> SimulatorConfig: ...

    async def spend(self, seconds: float) -> None: ...
    async def sample(self, steps: int, latent: Picture) -> None: ...
    async def send_text(self, text: str) -> None: ...
    def save_images(self, picture: Picture, prefix: str, kind: str) -> list[dict[str, str]]: ...


@dataclass(frozen=True, slots=True)
class NodeResult:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None = None


NodeFunction = Callable[[NodeContext, Mapping[str, Any]], Awaitable[NodeResult]]


@cache
def _recorded() -> dict[str, Any]:
    return dict(json.loads(_DEFINITIONS.read_text()))


def object_info(config: SimulatorConfig) -> dict[str, Any]:
    """Every node definition, with the lists this simulator offers filled in."""
    info = copy.deepcopy(_recorded())
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = list(
        config.offered_checkpoints
    )
    sampler = info["KSampler"]["input"]["required"]
    sampler["sampler_name"][0] = list(config.samplers)
    sampler["scheduler"][0] = list(config.schedulers)
    return info


def is_output(info: Mapping[str, Any], class_type: str) -> bool:
    return bool(info[class_type].get("output_node"))


# --- behaviour -----------------------------------------------------------------------------


async def _checkpoint(ctx: NodeContext, inputs: Mapping[str, Any]) -> NodeResult:
    name = inputs["ckpt_name"]
    if name in ctx.config.corrupt_checkpoints:
        raise NodeFailure(
            "safetensors._safetensors_rust.SafetensorError",
            "Error while deserializing header: invalid UTF-8 in header: "
            "invalid utf-8 sequence of 1 bytes from index 15",
        )
    await ctx.spend(ctx.config.load_time)
    return NodeResult((f"MODEL:{name}", f"CLIP:{name}", f"VAE:{name}"))


async def _clip_encode(ctx: NodeContext, inputs: Mapping[str, Any]) -> NodeResult:
    await ctx.spend(ctx.config.node_time)
    return NodeResult((f"CONDITIONING:{inputs['text']}",))


async def _empty_latent(ctx: NodeContext, inputs: Mapping[str, Any]) -> NodeResult:
    width, height = inputs["width"] // 8 * 8, inputs["height"] // 8 * 8
    return NodeResult((Picture(width, height, inputs["batch_size"], 0),))


async def _ksampler(ctx: NodeContext, inputs: Mapping[str, Any]) -> NodeResult:
    latent: Picture = inputs["latent_image"]
    await ctx.sample(inputs["steps"], latent)
    seed = (int(inputs["seed"]) * 31 + latent.seed) % (2**63)
    return NodeResult((replace(latent, seed=seed),))


async def _vae_decode(ctx: NodeContext, inputs: Mapping[str, Any]) -> NodeResult:
    await ctx.spend(ctx.config.node_time)
    return NodeResult((inputs["samples"],))


async def _save_image(ctx: NodeContext, inputs: Mapping[str, Any]) -> NodeResult:
    images = ctx.save_images(inputs["images"], inputs["filename_prefix"], "output")
    return NodeResult((), {"images": images})


async def _preview_image(ctx: NodeContext, inputs: Mapping[str, Any]) -> NodeResult:
    images = ctx.save_images(inputs["images"], "", "temp")
    return NodeResult((), {"images": images})


async def _image_scale(ctx: NodeContext, inputs: Mapping[str, Any]) -> NodeResult:
    image: Picture = inputs["image"]
    width, height = inputs["width"], inputs["height"]
    if width == 0 and height == 0:
        return NodeResult((image,))
    if width == 0:
        width = max(1, round(image.width * height / image.height))
    if height == 0:
        height = max(1, round(image.height * width / image.width))
    return NodeResult((replace(image, width=width, height=height),))


async def _latent_upscale_by(ctx: NodeContext, inputs: Mapping[str, Any]) -> NodeResult:
    latent: Picture = inputs["samples"]
    h, w = latent.height // 8, latent.width // 8
    new_h, new_w = round(h * inputs["scale_by"]), round(w * inputs["scale_by"])
    if new_h <= 0 or new_w <= 0:
        raise NodeFailure(
            "RuntimeError",
            "Input and output sizes should be greater than 0, but got "
            f"input (H: {h}, W: {w}) output (H: {new_h}, W: {new_w})",
        )
    return NodeResult((replace(latent, width=new_w * 8, height=new_h * 8),))


async def _empty_image(ctx: NodeContext, inputs: Mapping[str, Any]) -> NodeResult:
    picture = Picture(inputs["width"], inputs["height"], inputs["batch_size"], 0, inputs["color"])
    return NodeResult((picture,))


async def _get_image_size(ctx: NodeContext, inputs: Mapping[str, Any]) -> NodeResult:
    image: Picture = inputs["image"]
    await ctx.send_text(f"width: {image.width}, height: {image.height}\n batch size: {image.batch}")
    return NodeResult((image.width, image.height, image.batch))


async def _preview_any(ctx: NodeContext, inputs: Mapping[str, Any]) -> NodeResult:
    source = inputs["source"]
    try:
        text = json.dumps(source, indent=4)
    except TypeError:
        text = str(source)
    return NodeResult((), {"text": [text]})


NODE_FUNCTIONS: dict[str, NodeFunction] = {
    "CheckpointLoaderSimple": _checkpoint,
    "CLIPTextEncode": _clip_encode,
    "EmptyLatentImage": _empty_latent,
    "KSampler": _ksampler,
    "VAEDecode": _vae_decode,
    "SaveImage": _save_image,
    "PreviewImage": _preview_image,
    "ImageScale": _image_scale,
    "LatentUpscaleBy": _latent_upscale_by,
    "EmptyImage": _empty_image,
    "GetImageSize": _get_image_size,
    "PreviewAny": _preview_any,
}
SAMPLER_CLASSES = frozenset({"KSampler"})
