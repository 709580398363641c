"""Image links cannot reach a file outside the storage folder, whatever the caller sends and
even if a stored path were tampered with; the web client's folder is closed the same way.

A canary file sits right beside the storage folder; no answer may ever contain it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stargraph.bootstrap import SimulateOptions
from stargraph.comfy.sim_config import RECORDED_CHECKPOINT
from stargraph.domain.types import ImageId
from stargraph.store.models import ImageRow
from tests.e2e.harness import Stack, running_stargraph, subscriptions
from tests.hostile.rawhttp import raw_get

CANARY = f"canary-{uuid.uuid4().hex}"
SUBMIT = (
    'mutation { submitText2Image(input: {prompt: "a cat", steps: 1, width: 64, height: 64}) '
    "{ id } }"
)
FOLLOW = (
    "subscription($id: ID!) { jobEvents(jobId: $id) { ... on JobSucceeded { images { id url } } } }"
)
ESCAPES = [
    "../../secret.txt",
    "..%2F..%2Fsecret.txt",
    "%2e%2e%2f%2e%2e%2fsecret.txt",
    "%2E%2E/%2E%2E/secret.txt",
    "..%252F..%252Fsecret.txt",
    "..%5c..%5csecret.txt",
    "....//....//secret.txt",
    "%c0%ae%c0%ae/%c0%ae%c0%ae/secret.txt",
    "%00../../secret.txt",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    (tmp_path / "secret.txt").write_text(CANARY)
    async with running_stargraph(
        tmp_path, simulate=SimulateOptions(step_time_s=0.005), default_model=RECORDED_CHECKPOINT,
        storage_dir=tmp_path / "images",
    ) as stack:  # fmt: skip
        yield stack


async def _an_image(stack: Stack) -> tuple[str, str]:
    """A real image of a finished job: its id and signed URL."""
    user = await stack.client.register("painter")
    job = (await user.data(SUBMIT))["submitText2Image"]["id"]
    async with subscriptions(stack.url, user.token) as ws:
        events = [e async for e in ws.events(await ws.subscribe(FOLLOW, {"id": job}))]
    image = events[-1]["jobEvents"]["images"][0]
    return image["id"], image["url"]


def _safe(status: int, body: bytes) -> bool:
    return status in (400, 403, 404) and CANARY.encode() not in body and b"root:" not in body


async def test_traversal_in_the_link_never_leaves_the_storage_folder(stack: Stack) -> None:
    _, url = await _an_image(stack)
    query = url.split("?", 1)[1]
    signer = stack.services.signer
    for escape in ESCAPES:
        expiry = 4_000_000_000
        signed = f"e={expiry}&s={signer.sign(ImageId(escape), expiry)}"  # even a valid signature
        for target in (f"/images/{escape}?{query}", f"/images/{escape}?{signed}"):
            status, body = await raw_get(stack.url, target)
            assert _safe(status, body), (target, status, body[:200])
    status, body = await raw_get(stack.url, url)
    assert status == 200 and body.count(b"PNG") >= 1


async def test_a_tampered_stored_path_or_a_symlink_is_not_followed(
    stack: Stack, tmp_path: Path
) -> None:
    image_id, url = await _an_image(stack)
    row = await ImageRow.get(id=image_id)
    stored = tmp_path / "images" / row.path
    for evil in ("../secret.txt", str(tmp_path / "secret.txt"), "../../../../../etc/passwd"):
        await ImageRow.filter(id=image_id).update(path=evil)
        status, body = await raw_get(stack.url, url)
        assert _safe(status, body), (evil, status, body[:200])
    await ImageRow.filter(id=image_id).update(path=row.path)
    stored.unlink()
    stored.symlink_to(tmp_path / "secret.txt")
    status, body = await raw_get(stack.url, url)
    assert _safe(status, body), (status, body[:200])


async def test_odd_signatures_and_expiries_are_refused_not_crashed(stack: Stack) -> None:
    _, url = await _an_image(stack)
    path, query = url.split("?", 1)
    expiry = query.split("&")[0]
    for tail in ("s=%C3%A9", "s=%00", "s=" + "A" * 5000, "s=", "s=%FF"):
        status, body = await raw_get(stack.url, f"{path}?{expiry}&{tail}")
        assert status == 403, (tail, status, body[:200])
    for bad in ("e=%D9%A3", "e=-1", "e=1e10", "e=99999999999999999999", "e="):
        status, body = await raw_get(stack.url, f"{path}?{bad}&{query.split('&')[1]}")
        assert status == 403, (bad, status, body[:200])


async def test_the_web_folder_cannot_be_left_either(stack: Stack) -> None:
    for target in ("/../stargraph/app.py", "/%2e%2e/app.py", "/..%2fapp.py", "/%2e%2e%2fapp.py",
                   "/web/../../pyproject.toml", "/%2e%2e/%2e%2e/pyproject.toml",
                   "/..%5capp.py", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd"):  # fmt: skip
        status, body = await raw_get(stack.url, target)
        assert b"from __future__" not in body and b"[project]" not in body, target
        assert b"root:" not in body and status in (400, 403, 404), (target, status)
