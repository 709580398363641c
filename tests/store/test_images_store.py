"""The image store on SQLite, PostgreSQL and MariaDB: images of jobs, a user's gallery pages
(newest first), deletion."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stargraph.domain.types import ImageId, UserId, new_image_id, new_job_id
from stargraph.store.images import TortoiseImageStore
from stargraph.store.jobs import TortoiseJobStore
from stargraph.store.ledger import TortoiseLedger
from stargraph.store.models import ImageRow
from tests.store.test_jobs_store import BACKEND, PRICE, T0, images, make_job, make_user


@pytest.fixture
def store(any_db: str) -> TortoiseImageStore:
    return TortoiseImageStore()


async def finished_job(user: UserId, count: int, minutes: int) -> list[ImageId]:
    """A job that succeeded `minutes` after T0 with `count` images; their ids by index."""
    jobs = TortoiseJobStore(TortoiseLedger())
    job, _ = await jobs.create_queued(make_job(user, count=count))
    await jobs.mark_dispatched(job, BACKEND, T0)
    await jobs.succeed(job.id, images(job, count), PRICE, T0 + timedelta(minutes=minutes))
    rows = await ImageRow.filter(job_id=job.id).order_by("index")
    return [ImageId(r.id) for r in rows]


async def test_images_of_jobs_in_batch_order(store: TortoiseImageStore) -> None:
    user = await make_user(1000)
    first = await finished_job(user, 3, 1)
    second = await finished_job(user, 1, 2)
    one = await store.get(first[1])
    assert one is not None and (one.index, one.user_id, one.width, one.height) == (
        1, user, 512, 768,
    )  # fmt: skip
    assert one.created_at == T0 + timedelta(minutes=1) and one.created_at.tzinfo is not None
    job_id = one.job_id
    other_job = (await store.get(second[0])).job_id  # type: ignore[union-attr]
    nothing = new_job_id()
    found = await store.for_jobs([job_id, other_job, nothing])
    assert [i.id for i in found[job_id]] == first
    assert [i.id for i in found[other_job]] == second
    assert found[nothing] == []
    assert await store.for_jobs([]) == {}
    assert await store.get(new_image_id()) is None


async def test_gallery_pages_newest_first_and_only_the_users(store: TortoiseImageStore) -> None:
    user, other = await make_user(1000), await make_user(1000)
    made: list[ImageId] = []
    for minute in range(4):
        made += await finished_job(user, 2, minute)  # two images share each timestamp
    await finished_job(other, 1, 99)
    pages, after = [], None
    while True:
        page = await store.page_for_user(user, 3, after)
        pages.append([i.id for i in page.images])
        if not page.has_more:
            break
        after = page.images[-1].id
    seen = [i for p in pages for i in p]
    assert [len(p) for p in pages] == [3, 3, 2]
    assert sorted(seen) == sorted(made)
    by_id = {i: await store.get(i) for i in seen}
    keys = [(by_id[i].created_at, i) for i in seen]  # type: ignore[union-attr]
    assert keys == sorted(keys, reverse=True)
    foreign = (await store.page_for_user(other, 10, None)).images[0].id
    restart = await store.page_for_user(user, 3, foreign)  # another user's anchor: no leak
    assert [i.id for i in restart.images] == pages[0]


async def test_delete_returns_the_image_once(store: TortoiseImageStore) -> None:
    user = await make_user(100)
    [image_id] = await finished_job(user, 1, 0)
    deleted = await store.delete(image_id)
    assert deleted is not None and deleted.id == image_id
    assert await store.get(image_id) is None
    assert await store.delete(image_id) is None
