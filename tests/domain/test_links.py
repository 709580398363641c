"""Signed image links: usable in <img src>, refused when tampered or expired."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from stargraph.domain.errors import Forbidden
from stargraph.domain.gallery import LinkSigner
from stargraph.domain.types import ImageId

IMAGE = ImageId("5f0c2a1e-9d3b-4c6e-8f1a-2b3c4d5e6f70")


def _parts(url: str) -> tuple[str, int, str]:
    split = urlsplit(url)
    query = parse_qs(split.query)
    return split.path.rsplit("/", 1)[1], int(query["e"][0]), query["s"][0]


def test_a_fresh_link_verifies() -> None:
    signer = LinkSigner(b"secret")
    image_id, expires, signature = _parts(signer.url(IMAGE, now=1_000_000, ttl_s=3600))
    assert image_id == IMAGE
    signer.verify(ImageId(image_id), expires, signature, now=1_000_000)


def test_links_live_at_least_the_ttl_and_are_stable_within_a_window() -> None:
    signer = LinkSigner(b"secret")
    first = signer.url(IMAGE, now=1_000_000, ttl_s=3600)
    _, expires, _ = _parts(first)
    assert expires >= 1_000_000 + 3600
    assert signer.url(IMAGE, now=1_000_001, ttl_s=3600) == first


@pytest.mark.parametrize("tamper", ["image", "expiry", "signature", "secret"])
def test_a_tampered_link_is_forbidden(tamper: str) -> None:
    signer = LinkSigner(b"secret")
    image_id, expires, signature = _parts(signer.url(IMAGE, now=1_000_000, ttl_s=3600))
    if tamper == "image":
        image_id = image_id[:-1] + ("1" if image_id[-1] != "1" else "2")
    elif tamper == "expiry":
        expires += 3600
    elif tamper == "signature":
        signature = signature[::-1]
    else:
        signer = LinkSigner(b"other")
    with pytest.raises(Forbidden):
        signer.verify(ImageId(image_id), expires, signature, now=1_000_000)


def test_an_expired_link_is_forbidden() -> None:
    signer = LinkSigner(b"secret")
    image_id, expires, signature = _parts(signer.url(IMAGE, now=1_000_000, ttl_s=3600))
    with pytest.raises(Forbidden, match="expired"):
        signer.verify(ImageId(image_id), expires, signature, now=expires + 1)
