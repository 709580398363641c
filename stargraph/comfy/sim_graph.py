"""Graph rules of the ComfyUI simulator: cache signatures and the order nodes run in.

Pure functions over an API-format prompt (`{id: {"class_type", "inputs"}}`), reproducing what
the recordings show: a node is reused when its input signature (class, values, upstream
signatures) was in the previous prompt, and nodes run in ComfyUI's "UX-friendly" order.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

Prompt = Mapping[str, Mapping[str, Any]]


class CycleError(Exception):
    """The remaining nodes depend on each other; `node_id` is one of them."""

    def __init__(self, node_id: str) -> None:
        super().__init__("Dependency cycle detected")
        self.node_id = node_id


def is_link(value: Any) -> bool:
    """`[node_id, output_index]`, as ComfyUI recognises a link."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int | float)
    )


def signatures(prompt: Prompt) -> dict[str, str]:
    """Each node's cache key: its class, literal inputs and upstream keys."""
    done: dict[str, str] = {}
    for node_id in prompt:
        _signature(prompt, node_id, done, set())
    return done


def _signature(prompt: Prompt, node_id: str, done: dict[str, str], visiting: set[str]) -> str:
    if node_id in done:
        return done[node_id]
    node = prompt.get(node_id)
    if node is None or node_id in visiting:
        return f"<unresolved {node_id}>"
    visiting.add(node_id)
    parts = []
    for name, value in sorted(node.get("inputs", {}).items()):
        if is_link(value):
            upstream = _signature(prompt, str(value[0]), done, visiting)
            parts.append([name, upstream, value[1]])
        else:
            parts.append([name, value])
    visiting.discard(node_id)
    done[node_id] = json.dumps([node.get("class_type"), parts], sort_keys=True, default=str)
    return done[node_id]


@dataclass
class _Plan:
    pending: dict[str, None] = field(default_factory=dict)
    blocking: dict[str, set[str]] = field(default_factory=dict)  # node -> nodes waiting on it
    block_count: dict[str, int] = field(default_factory=dict)


def execution_order(
    prompt: Prompt, outputs: list[str], cached: Collection[str], output_nodes: Collection[str]
) -> list[str]:
    """Nodes to visit, in order: the outputs and the uncached nodes they need."""
    plan = _Plan()
    for output in outputs:
        _add(prompt, output, cached, plan)
    order = []
    while plan.pending:
        ready = [n for n in plan.pending if plan.block_count[n] == 0]
        if not ready:
            raise CycleError(next(iter(plan.pending)))
        node = _pick(ready, plan, output_nodes)
        order.append(node)
        del plan.pending[node]
        for waiting in plan.blocking[node]:
            plan.block_count[waiting] -= 1
    return order


def _add(prompt: Prompt, start: str, cached: Collection[str], plan: _Plan) -> None:
    stack = [start]
    while stack:
        node = stack.pop()
        if node in plan.pending:
            continue
        plan.pending[node] = None
        plan.blocking.setdefault(node, set())
        plan.block_count.setdefault(node, 0)
        for value in prompt[node].get("inputs", {}).values():
            if not is_link(value) or str(value[0]) in cached:
                continue
            source = str(value[0])
            stack.append(source)
            waiting = plan.blocking.setdefault(source, set())
            if node not in waiting:
                waiting.add(node)
                plan.block_count[node] += 1


def _pick(ready: list[str], plan: _Plan, output_nodes: Collection[str]) -> str:
    """Outputs first, then what feeds an output, then what feeds that (ComfyUI's choice)."""
    for node in ready:
        if node in output_nodes:
            return node
    for node in ready:
        if any(n in output_nodes for n in plan.blocking[node]):
            return node
    for node in ready:
        for mid in plan.blocking[node]:
            if any(n in output_nodes for n in plan.blocking[mid]):
                return node
    return ready[0]


@dataclass(frozen=True, slots=True)
class CachedNode:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None


class OutputCache:
    """ComfyUI's default ("classic") cache: results keyed by signature, kept one prompt long."""

    def __init__(self) -> None:
        self._entries: dict[str, CachedNode] = {}

    def keep_only(self, keys: Collection[str]) -> None:
        """At a prompt's start, forget every result this prompt cannot use."""
        self._entries = {k: v for k, v in self._entries.items() if k in keys}

    def get(self, key: str) -> CachedNode | None:
        return self._entries.get(key)

    def put(self, key: str, entry: CachedNode) -> None:
        self._entries[key] = entry

    def clear(self) -> None:
        self._entries.clear()
