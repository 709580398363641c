"""Input types, each with `to_domain`. Validation stays in the domain (domain/params.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import strawberry
from strawberry.types.arguments import InputContext
from strawberry.types.base import (
    StrawberryList,
    StrawberryOptional,
    get_object_definition,
    has_object_definition,
)

from stargraph.domain.params import SubmitRequest
from stargraph.domain.types import Priority
from stargraph.schema.scalars import SafeInt
from stargraph.schema.types import PriorityEnum


@strawberry.input(description="A text-to-image request. Null fields take the workflow's default.")
class Text2ImageInput:
    prompt: str = strawberry.field(description="1..2000 characters, any language.")
    negative_prompt: str | None = ""
    count: int | None = strawberry.field(default=1, description="Images, 1..8.")
    width: int | None = strawberry.field(default=512, description="64..2048, a multiple of 8.")
    height: int | None = 512
    steps: int | None = strawberry.field(default=20, description="1..100.")
    cfg: float | None = strawberry.field(default=8.0, description="0..30.")
    sampler: str | None = strawberry.field(default="euler", description="One of `samplers`.")
    scheduler: str | None = strawberry.field(default="normal", description="One of `schedulers`.")
    model: str | None = strawberry.field(
        default=None, description="A checkpoint of `models`; null = the configured default."
    )
    seed: SafeInt | None = strawberry.field(
        default=None, description="Null or 0 = random; the job reports the seed used."
    )
    workflow: str | None = "t2i"
    priority: PriorityEnum | None = Priority.NORMAL
    idempotency_key: str | None = strawberry.field(
        default=None, description="The same key from the same user is the same job, charged once."
    )

    def to_domain(self) -> SubmitRequest:
        return SubmitRequest(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            count=self.count,
            width=self.width,
            height=self.height,
            steps=self.steps,
            cfg=self.cfg,
            sampler=self.sampler,
            scheduler=self.scheduler,
            model=self.model,
            seed=self.seed,
            workflow=self.workflow,
            priority=self.priority if self.priority is not None else Priority.NORMAL,
            idempotency_key=self.idempotency_key,
        )


def _leaf_fields_from_input(cls: type) -> None:
    """Build `cls` from its GraphQL input value in one call, instead of Strawberry's
    field-by-field conversion, which resolves every field's annotation on every request (a
    seventh of a submission's CPU). Only for inputs made of scalars and enums: graphql-core
    has already coerced those to their Python values, so they pass through unchanged."""
    definition = get_object_definition(cls, strict=True)
    for field in definition.fields:
        kind = field.resolve_type(type_definition=definition)
        kind = kind.of_type if isinstance(kind, StrawberryOptional) else kind
        if isinstance(kind, StrawberryList) or has_object_definition(kind):
            raise TypeError(f"{cls.__name__}.{field.python_name} is not a scalar or an enum")
    names: list[tuple[str, str]] = []  # (GraphQL name, Python name), known at the first call

    def from_input(target: type, value: Mapping[str, Any], context: InputContext) -> object:
        if not names:
            names.extend((context.config.name_converter.from_field(f), f.python_name)
                         for f in definition.fields)  # fmt: skip
        return target(**{python: value[graphql] for graphql, python in names if graphql in value})

    definition.from_input = from_input


_leaf_fields_from_input(Text2ImageInput)
