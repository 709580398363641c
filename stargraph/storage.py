"""Image bytes on local disk under one root; paths can never leave it."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from stargraph.domain.types import JobId, UserId


def image_path(user_id: UserId, job_id: JobId, index: int) -> str:
    """The relative path of a job's `index`-th image: the same for every writer (idempotent)."""
    return f"{int(user_id)}/{job_id}/{int(index)}.png"


class DiskImageFiles:
    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def resolve(self, path: str) -> Path:
        """The absolute path of `path`; ValueError if it would escape the root."""
        full = (self._root / path).resolve()
        if not full.is_relative_to(self._root) or full == self._root:
            raise ValueError(f"path escapes the storage root: {path!r}")
        return full

    async def write(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(self._write_atomically, self.resolve(path), data)

    async def read(self, path: str) -> bytes:
        return await asyncio.to_thread(self.resolve(path).read_bytes)

    async def delete(self, path: str) -> None:
        await asyncio.to_thread(self.resolve(path).unlink, missing_ok=True)

    def exists(self, path: str) -> bool:
        return self.resolve(path).is_file()

    @staticmethod
    def _write_atomically(target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        temp.write_bytes(data)
        os.replace(temp, target)
