"""The committed SDL is what the code builds, and it keeps every name of the contract."""

from __future__ import annotations

from pathlib import Path

from stargraph.schema.build import sdl

COMMITTED = Path(__file__).resolve().parents[2] / "schema.graphql"

CONTRACT_FIELDS = {
    "Query": "me balance ledger job jobs queue gallery models samplers schedulers workflows "
    "backends pricePerImage",
    "Mutation": "register login logout submitText2Image cancelJob reprioritizeJob deleteImage "
    "grantPoints",
    "Subscription": "jobEvents myJobEvents",
    "Job": "id status queuePosition prompt translatedPrompt positivePrompt negativePrompt count "
    "width height steps cfg sampler scheduler model seed priority cost charged progress images "
    "error createdAt startedAt finishedAt",
    "Image": "id url width height seed createdAt job",
    "JobQueued": "jobId at status cursor position",
    "JobProgress": "step maxSteps fraction",
    "JobPreview": "image",
    "JobSucceeded": "images",
    "JobFailed": "error",
    "QueueInfo": "length running healthyBackends etaSeconds",
    "Backend": "url healthy inflight lastError",
    "LedgerEntry": "id kind amount availableAfter frozenAfter jobId reason createdAt",
}


def test_committed_sdl_matches_the_code() -> None:
    assert COMMITTED.read_text() == sdl(), (
        "schema.graphql is stale: run `stargraph schema > schema.graphql` and review the diff"
    )


def _block(text: str, name: str) -> str:
    for keyword in ("type", "interface", "input"):
        start = text.find(f"{keyword} {name} ")
        if start >= 0:
            return text[start : text.index("\n}", start)]
    raise AssertionError(f"{name} missing from the schema")


def test_every_contract_name_is_there() -> None:
    text = sdl()
    for type_name, fields in CONTRACT_FIELDS.items():
        block = _block(text, type_name)
        for field in fields.split():
            assert f"\n  {field}" in block, f"{type_name}.{field} missing"
    for event in (
        "JobQueued",
        "JobStarted",
        "JobProgress",
        "JobPreview",
        "JobSucceeded",
        "JobFailed",
        "JobCancelled",
    ):
        assert f"type {event} implements JobEvent" in text
