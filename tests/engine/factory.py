"""Test jobs: rendered t2i graphs for the simulator, as domain `Job` values."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime

from stargraph.domain.jobs import Job, JobParams, JobStatus, TranslationState
from stargraph.domain.types import JobId, Priority, UserId, new_job_id
from stargraph.domain.workflows import WorkflowCatalog
from stargraph.settings import PROJECT_ROOT

CATALOG = WorkflowCatalog.load(PROJECT_ROOT / "workflows")
CHECKPOINT = "sim-sd15.safetensors"
PRICE = 10


def make_job(
    user_id: int,
    *,
    job_id: str | None = None,
    count: int = 1,
    steps: int = 3,
    size: int = 64,
    model: str = CHECKPOINT,
    sampler: str = "euler",
    seed: int = 7,
    prompt: str = "a lighthouse at dusk",
    priority: Priority = Priority.NORMAL,
    created_at: datetime | None = None,
) -> Job:
    """A QUEUED job whose graph is the real t2i template rendered for its parameters."""
    jid = JobId(job_id) if job_id else new_job_id()
    params = JobParams(
        prompt=prompt,
        negative_prompt="",
        count=count,
        width=size,
        height=size,
        steps=steps,
        cfg=7.0,
        sampler=sampler,
        scheduler="normal",
        model=model,
        seed=seed,
        workflow="t2i",
        priority=priority,
    )
    return Job(
        id=jid,
        user_id=UserId(user_id),
        status=JobStatus.QUEUED,
        params=params,
        positive_prompt=prompt,
        effective_negative_prompt="",
        translated_prompt=None,
        translation=TranslationState.NOT_NEEDED,
        cost=count * PRICE,
        created_at=created_at or datetime.now(UTC),
        graph=CATALOG.render("t2i", jid, params, prompt, ""),
    )


def with_second_pass(job: Job, steps: int) -> Job:
    """`job` with a second, upscaling pass between its sampler and the decode: the latent
    upscaled ("10"), then a KSampler ("11") of `steps` steps that feeds the decode."""
    graph = copy.deepcopy(job.graph)
    graph["10"] = {"class_type": "LatentUpscaleBy",
                   "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact",
                              "scale_by": 1.5}}  # fmt: skip
    second = copy.deepcopy(graph["3"])
    second["inputs"] |= {"latent_image": ["10", 0], "steps": steps, "denoise": 0.5}
    graph["11"] = second
    graph["8"]["inputs"]["samples"] = ["11", 0]
    return replace(job, graph=graph)
