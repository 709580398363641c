"""Sampler previews made small enough to travel as events (data URLs).

ComfyUI enlarges previews to its preview size (512 px, ~40–130 KB of JPEG per step, seen in
the recordings); subscribers only need a thumbnail.
"""

from __future__ import annotations

import asyncio
import base64
import io

from PIL import Image, UnidentifiedImageError

MAX_SIDE = 256
QUALITY = 70


def shrink(image: bytes, max_side: int = MAX_SIDE) -> bytes | None:
    """A JPEG no larger than `max_side` on either side; None when `image` cannot be read."""
    try:
        with Image.open(io.BytesIO(image)) as picture:
            picture.thumbnail((max_side, max_side))
            out = io.BytesIO()
            picture.convert("RGB").save(out, format="JPEG", quality=QUALITY)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return out.getvalue()


async def preview_data_url(image: bytes) -> str | None:
    """`data:image/jpeg;base64,…` of the shrunk preview (the work runs in a thread)."""
    small = await asyncio.to_thread(shrink, image)
    if small is None:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(small).decode("ascii")
