"""Input types, each with `to_domain`. Validation stays in the domain (domain/params.py)."""

from __future__ import annotations

import strawberry

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
