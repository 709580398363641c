"""Hypothesis strategies for the values inside hostile GraphQL documents.

Each scalar mixes arbitrary values with ones that mean something to StarGraph (real ids,
cursors, sampler names, boundary numbers, injection attempts), so generated requests reach
the code behind validation instead of stopping at NOT_FOUND.
"""

from __future__ import annotations

from typing import Any, TypeVar

import graphql
from hypothesis import strategies as st
from hypothesis_graphql import nodes

from stargraph.comfy.sim_config import RECORDED_CHECKPOINT
from stargraph.schema.relay import encode_cursor
from tests.hostile.world import PASSWORD, Known

ATTACKS = [
    "",
    " ",
    "{{ 7*7 }}",
    "{% raw %}x{% endraw %}",
    '"}, "99": {"class_type": "SaveImage"',
    "'; DROP TABLE users; --",
    "../../../../etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "\x00",
    "a\x00b",
    "\u202e\u200b",
    "一只在月光下的猫",
    "(masterpiece:1.2), <lora:x:0.5>",
    "x" * 2000,
    "x" * 2001,
    "é" * 129,
]
T = TypeVar("T")

INT_EDGES = [-(2**31), -1, 0, 1, 2, 7, 8, 9, 20, 63, 64, 100, 101, 512, 2048, 2056, 2**31 - 1]
FLOAT_EDGES = [-0.0, 0.0, 8.0, 29.999, 30.0, 30.000001, -1e-300, 1e308]


def _string(known: Known) -> st.SearchStrategy[str]:
    cursors = [encode_cursor("job", j) for j in known.job_ids]
    cursors += [encode_cursor("image", i) for i in known.image_ids]
    cursors += [encode_cursor("ledger", n) for n in (1, 2, 3, 10**20)]
    cursors += [encode_cursor("job", "x" * 300), encode_cursor("image", "a\x00b")]
    words = ["euler", "normal", "karras", "t2i", RECORDED_CHECKPOINT, PASSWORD, "fuzz"]
    meaningful = [*ATTACKS, *cursors, *words, *known.usernames, *known.job_ids]
    return st.one_of(st.text(max_size=40), st.sampled_from(meaningful))


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of the strategies, each picked `weight` times as often as a weight of 1."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def _id(known: Known) -> st.SearchStrategy[str]:
    forged = [s.upper() for s in known.job_ids] + ["0", "-1", "9" * 30, " 1", "1 "]
    return weighted(
        (2, st.sampled_from(known.job_ids)),
        (1, st.sampled_from(known.image_ids)),
        (2, st.sampled_from(known.user_ids)),
        (1, st.sampled_from(forged)),
        (1, st.uuids().map(str)),
        (1, st.text(max_size=40)),
    )


def scalars(known: Known) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    """`custom_scalars` for hypothesis-graphql, built-in scalars included."""
    return {
        "String": _string(known).map(nodes.String),
        "ID": _id(known).map(nodes.String),
        "Int": weighted(
            (1, st.integers(-(2**31), 2**31 - 1)),
            (1, st.integers(-3, 130)),
            (1, st.sampled_from(INT_EDGES)),
        ).map(nodes.Int),
        "Float": st.one_of(
            st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(FLOAT_EDGES)
        ).map(nodes.Float),
        "SafeInt": st.one_of(
            st.integers(0, 2**53 - 1), st.sampled_from([0, 1, 2**53 - 1, 2**53, -1])
        ).map(nodes.Int),
    }


def json_values(known: Known) -> st.SearchStrategy[Any]:
    """Any JSON value, biased towards StarGraph's meaningful strings and numbers."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64),
        st.sampled_from(INT_EDGES),
        st.floats(allow_nan=False, allow_infinity=False),
        _string(known),
        _id(known),
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=8,
    )
