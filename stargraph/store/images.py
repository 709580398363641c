"""Tortoise implementation of the domain's ImageStore."""

from __future__ import annotations

from collections import defaultdict

from stargraph.domain.gallery import Image, ImagePage
from stargraph.domain.types import ImageId, JobId, UserId
from stargraph.store.convert import image_from_row, older_than
from stargraph.store.models import ImageRow


class TortoiseImageStore:
    async def get(self, image_id: ImageId) -> Image | None:
        row = await ImageRow.get_or_none(id=image_id)
        return image_from_row(row) if row else None

    async def for_jobs(self, job_ids: list[JobId]) -> dict[JobId, list[Image]]:
        found: dict[JobId, list[Image]] = defaultdict(list)
        if job_ids:
            rows = await ImageRow.filter(job_id__in=job_ids).order_by("index")
            for row in rows:
                image = image_from_row(row)
                found[image.job_id].append(image)
        return {job_id: found.get(job_id, []) for job_id in job_ids}

    async def page_for_user(self, user_id: UserId, limit: int, after: ImageId | None) -> ImagePage:
        query = ImageRow.filter(user_id=user_id)
        if after is not None:
            anchor = await ImageRow.get_or_none(id=after, user_id=user_id)
            if anchor is not None:
                query = query.filter(older_than(anchor.created_at, anchor.id))
        rows = await query.order_by("-created_at", "-id").limit(limit + 1)
        return ImagePage([image_from_row(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def delete(self, image_id: ImageId) -> Image | None:
        row = await ImageRow.get_or_none(id=image_id)
        if row is None:
            return None
        deleted = await ImageRow.filter(id=image_id).delete()
        return image_from_row(row) if deleted else None
