"""What the engines can do: the checkpoints, samplers and schedulers a job may ask for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Capabilities:
    checkpoints: tuple[str, ...]
    samplers: tuple[str, ...]
    schedulers: tuple[str, ...]

    def merged(self, other: Capabilities) -> Capabilities:
        """The union of two backends' offers, order kept, duplicates dropped."""
        return Capabilities(
            checkpoints=_union(self.checkpoints, other.checkpoints),
            samplers=_union(self.samplers, other.samplers),
            schedulers=_union(self.schedulers, other.schedulers),
        )


EMPTY_CAPABILITIES = Capabilities((), (), ())


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*a, *b)))
