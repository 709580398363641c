"""Slot counts as the SlotBook answers them, each one newer than the last."""

from __future__ import annotations

import itertools

from stargraph.domain.backends import SlotCount

_versions = itertools.count(1)


def fresh(count: int) -> SlotCount:
    """`count` as a SlotBook answer newer than every one made before."""
    return SlotCount(count, next(_versions))
