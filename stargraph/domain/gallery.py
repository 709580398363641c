"""A user's images: listing, deleting, and the signed links that serve them."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from stargraph.domain.errors import Forbidden, NotFound
from stargraph.domain.types import ImageId, JobId, Principal, UserId


@dataclass(frozen=True, slots=True)
class Image:
    id: ImageId
    job_id: JobId
    user_id: UserId
    index: int
    path: str  # relative to the storage root
    width: int
    height: int
    seed: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ImagePage:
    images: list[Image]
    has_more: bool


class ImageStore(Protocol):
    async def get(self, image_id: ImageId) -> Image | None: ...

    async def for_jobs(self, job_ids: list[JobId]) -> dict[JobId, list[Image]]: ...

    async def page_for_user(self, user_id: UserId, limit: int, after: ImageId | None) -> ImagePage:
        """Newest first; `after` is the last image id of the previous page."""
        ...

    async def delete(self, image_id: ImageId) -> Image | None: ...


class ImageFiles(Protocol):
    """Where image bytes live (local disk by default)."""

    async def write(self, path: str, data: bytes) -> None: ...

    async def delete(self, path: str) -> None: ...


class LinkSigner:
    """Signs and checks expiring image links: `/images/<id>?e=<expiry>&s=<signature>`."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, image_id: ImageId, expires_at: int) -> str:
        mac = hmac.new(self._secret, f"{image_id}:{expires_at}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:20]).decode().rstrip("=")

    def url(self, image_id: ImageId, now: float, ttl_s: int) -> str:
        # Round the expiry so every link to one image within a window is the same URL,
        # which lets browsers cache the image.
        expires_at = (int(now) // ttl_s + 2) * ttl_s
        return f"/images/{image_id}?e={expires_at}&s={self.sign(image_id, expires_at)}"

    def verify(self, image_id: ImageId, expires_at: int, signature: str, now: float) -> None:
        """Raise Forbidden for a tampered or expired link."""
        expected = self.sign(image_id, expires_at)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise Forbidden("invalid image link")
        if expires_at < now:
            raise Forbidden("expired image link")


class Gallery:
    """Use cases over a user's images."""

    def __init__(self, images: ImageStore, files: ImageFiles) -> None:
        self._images = images
        self._files = files

    async def page(self, principal: Principal, limit: int, after: ImageId | None) -> ImagePage:
        return await self._images.page_for_user(principal.user_id, limit, after)

    async def get(self, principal: Principal, image_id: ImageId) -> Image:
        image = await self._images.get(image_id)
        if image is None or (image.user_id != principal.user_id and not principal.is_admin):
            raise NotFound("image not found")
        return image

    async def delete(self, principal: Principal, image_id: ImageId) -> None:
        image = await self.get(principal, image_id)
        if await self._images.delete(image.id) is not None:
            await self._files.delete(image.path)
