"""Pictures of the ComfyUI simulator: cheap, deterministic PNGs, JPEG previews, the output store.

An image is stored as a recipe (size, seed, batch index, PNG text chunks) and rendered when
`/view` asks for it, so thousands of outputs cost almost no memory. The same recipe always
renders the same bytes: a coloured gradient whose colours and angle come from the seed.
"""

from __future__ import annotations

import functools
import io
import os
import posixpath
import random
import string
import time
from dataclasses import dataclass

from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

OUTPUT_TYPES = ("output", "input", "temp")
_GRADIENT = Image.linear_gradient("L")


@dataclass(frozen=True, slots=True)
class Picture:
    """An IMAGE or LATENT flowing between simulated nodes: a batch of images of one size."""

    width: int
    height: int
    batch: int
    seed: int
    color: int | None = None  # EmptyImage's flat colour (0xRRGGBB)


@dataclass(frozen=True, slots=True)
class StoredImage:
    """How to render one saved file."""

    width: int
    height: int
    seed: int
    index: int
    color: int | None = None
    text_chunks: tuple[tuple[str, str], ...] = ()


class SaveError(Exception):
    """A filename prefix that would leave the output folder (a runtime error in ComfyUI)."""


class OutputStore:
    """The simulator's `output/` and `temp/` folders. Outputs survive `restart()`, like files."""

    def __init__(self) -> None:
        self._files: dict[tuple[str, str, str], StoredImage] = {}
        self._counters: dict[tuple[str, str, str], int] = {}

    def save(
        self, picture: Picture, prefix: str, kind: str, chunks: tuple[tuple[str, str], ...] = ()
    ) -> list[dict[str, str]]:
        """Store a batch like SaveImage does; returns the UI entries (filename, subfolder, type)."""
        subfolder, base = _split_prefix(_expand(prefix, picture))
        counter = self._counters.get((kind, subfolder, base), 0) + 1
        entries = []
        for index in range(picture.batch):
            name = base.replace("%batch_num%", str(index))
            filename = f"{name}_{counter + index:05}_.png"
            stored = StoredImage(
                picture.width, picture.height, picture.seed, index, picture.color, chunks
            )
            self._files[(kind, subfolder, filename)] = stored
            entries.append({"filename": filename, "subfolder": subfolder, "type": kind})
        self._counters[(kind, subfolder, base)] = counter + picture.batch - 1
        return entries

    def get(self, kind: str, subfolder: str, filename: str) -> StoredImage | None:
        return self._files.get((kind, subfolder, filename))

    def clear_temp(self) -> None:
        """ComfyUI empties its temp folder when it starts."""
        for key in [key for key in self._files if key[0] == "temp"]:
            del self._files[key]
        for key in [key for key in self._counters if key[0] == "temp"]:
            del self._counters[key]


def temp_prefix() -> str:
    """PreviewImage's prefix: `ComfyUI_temp_` and five random letters."""
    return "ComfyUI_temp_" + "".join(random.choices(string.ascii_lowercase, k=5))


def _expand(prefix: str, picture: Picture) -> str:
    if "%" not in prefix:
        return prefix
    now = time.localtime()
    values = {
        "%width%": str(picture.width),
        "%height%": str(picture.height),
        "%year%": str(now.tm_year),
        "%month%": f"{now.tm_mon:02}",
        "%day%": f"{now.tm_mday:02}",
        "%hour%": f"{now.tm_hour:02}",
        "%minute%": f"{now.tm_min:02}",
        "%second%": f"{now.tm_sec:02}",
    }
    for key, value in values.items():
        prefix = prefix.replace(key, value)
    return prefix


def _split_prefix(prefix: str) -> tuple[str, str]:
    normal = posixpath.normpath(prefix)
    subfolder, base = posixpath.split(normal)
    inside = posixpath.normpath(posixpath.join("/output", subfolder))
    if not (inside == "/output" or inside.startswith("/output/")) or os.path.isabs(subfolder):
        raise SaveError(
            "**** ERROR: Saving image outside the output folder is not allowed.\n"
            f" full_output_folder: {inside}\n         output_dir: /output"
        )
    return subfolder, base


@functools.lru_cache(maxsize=64)
def render_png(image: StoredImage) -> bytes:
    """The PNG file of a stored image (deterministic; cached for repeated downloads)."""
    picture = _paint(image.width, image.height, image.seed, image.index, image.color)
    info = PngInfo()
    for key, value in image.text_chunks:
        info.add_text(key, value)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", pnginfo=info, compress_level=1)
    return buffer.getvalue()


def render_preview(picture: Picture, step: int, size: int) -> bytes:
    """A JPEG preview of the batch's first image, fitted into size × size (small ones enlarged)."""
    scale = size / max(picture.width, picture.height)
    width = max(1, round(picture.width * scale))
    height = max(1, round(picture.height * scale))
    image = _paint(width, height, picture.seed + step, 0, picture.color)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _paint(width: int, height: int, seed: int, index: int, color: int | None) -> Image.Image:
    if color is not None:
        rgb = ((color >> 16) & 255, (color >> 8) & 255, color & 255)
        return Image.new("RGB", (width, height), rgb)
    rng = random.Random(seed * 7919 + index)
    dark = tuple(rng.randrange(0, 128) for _ in range(3))
    light = tuple(rng.randrange(128, 256) for _ in range(3))
    angle = rng.randrange(360)
    gradient = _GRADIENT.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=128)
    tinted = ImageOps.colorize(gradient, dark, light)
    return tinted.resize((width, height), Image.Resampling.BILINEAR)


@dataclass(frozen=True, slots=True)
class ViewFile:
    body: bytes
    media_type: str


def view_variant(png: bytes, preview: str | None, channel: str | None) -> ViewFile:
    """What `/view` sends for a file and its `preview` / `channel` options (protocol §1.6)."""
    if preview is not None:
        return _preview_variant(png, preview, channel or "")
    if channel in (None, "rgba"):
        return ViewFile(png, "image/png")
    with Image.open(io.BytesIO(png)) as image:
        if channel == "a":
            out = image.getchannel("A") if "A" in image.getbands() else _opaque(image)
        else:
            out = image.convert("RGB")
        buffer = io.BytesIO()
        out.save(buffer, "PNG")
    return ViewFile(buffer.getvalue(), "image/png")


def _opaque(image: Image.Image) -> Image.Image:
    return Image.new("L", image.size, 255)


def _preview_variant(png: bytes, preview: str, channel: str) -> ViewFile:
    parts = preview.split(";")
    image_format = parts[0]
    if image_format not in ("webp", "jpeg") or "a" in channel:
        image_format = "webp"
    quality = int(parts[-1]) if parts[-1].isdigit() else 90
    with Image.open(io.BytesIO(png)) as image:
        out = image.convert("RGB") if image_format == "jpeg" or channel == "rgb" else image
        buffer = io.BytesIO()
        out.save(buffer, format=image_format, quality=quality)
    return ViewFile(buffer.getvalue(), f"image/{image_format}")
