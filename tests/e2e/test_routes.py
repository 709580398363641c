"""The endpoints beside GraphQL: signed image links, health, readiness, metrics."""

from __future__ import annotations

import logging
from pathlib import Path

from stargraph.bootstrap import SimulateOptions
from stargraph.comfy.sim_config import RECORDED_CHECKPOINT
from stargraph.domain.types import ImageId
from stargraph.routes import HideLinkSignatures
from tests.e2e.harness import Stack, User, running_stargraph, subscriptions

SUBMIT = "mutation($i: Text2ImageInput!) { submitText2Image(input: $i) { id } }"


async def _image_url(stack: Stack, user: User) -> str:
    job = (await user.data(SUBMIT, {"i": {"prompt": "a cat", "steps": 1, "width": 64,
                                          "height": 64}}))["submitText2Image"]["id"]  # fmt: skip
    query = (
        "subscription($id: ID!) { jobEvents(jobId: $id) "
        "{ ... on JobSucceeded { images { url } } } }"
    )
    async with subscriptions(stack.url, user.token) as ws:
        events = [e async for e in ws.events(await ws.subscribe(query, {"id": job}))]
    url: str = events[-1]["jobEvents"]["images"][0]["url"]
    return url


async def test_image_links_open_only_as_signed(tmp_path: Path) -> None:
    async with running_stargraph(
        tmp_path, simulate=SimulateOptions(step_time_s=0.005), default_model=RECORDED_CHECKPOINT,
        image_url_ttl_s=60,
    ) as stack:  # fmt: skip
        user = await stack.client.register("ida")
        url = await _image_url(stack, user)
        http = stack.client.http
        assert (await http.get(url)).status_code == 200
        path, query = url.split("?")
        expiry, signature = (p.split("=")[1] for p in query.split("&"))
        tampered_sig = signature[:-1] + ("A" if signature[-1] != "A" else "B")
        assert (await http.get(f"{path}?e={expiry}&s={tampered_sig}")).status_code == 403
        assert (await http.get(f"{path}?e={int(expiry) + 60}&s={signature}")).status_code == 403
        other_image = path[:-1] + ("0" if path[-1] != "0" else "1")
        assert (await http.get(f"{other_image}?e={expiry}&s={signature}")).status_code == 403
        expired_at = 1_000_000
        signer = stack.services.signer
        image_id = ImageId(path.rsplit("/", 1)[1])
        expired = f"{path}?e={expired_at}&s={signer.sign(image_id, expired_at)}"
        assert (await http.get(expired)).status_code == 403
        assert (await http.get(f"{path}?e=abc&s={signature}")).status_code == 403


async def test_health_readiness_and_metrics(tmp_path: Path) -> None:
    async with running_stargraph(tmp_path, worker=False) as stack:  # no backend
        http = stack.client.http
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        not_ready = await http.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["checks"]["database"] == "ok"
        assert not_ready.json()["checks"]["redis"] == "ok"
        assert not_ready.json()["checks"]["backends"].startswith("failing")
    async with running_stargraph(
        tmp_path / "sim", simulate=SimulateOptions(step_time_s=0.005),
        default_model=RECORDED_CHECKPOINT,
    ) as stack:  # fmt: skip
        http = stack.client.http
        user = await stack.client.register("ray")
        await _image_url(stack, user)
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        text = (await http.get("/metrics")).text
        for name in ("stargraph_queue_length", 'stargraph_jobs{status="succeeded"} 1.0',
                     "stargraph_backend_healthy{", "stargraph_job_run_seconds_count{",
                     "stargraph_backend_mean_run_seconds{", "stargraph_translation_cache_total",
                     "stargraph_subscriptions_open"):  # fmt: skip
            assert name in text, name


def test_access_lines_keep_everything_of_a_link_but_its_signature() -> None:
    hide = HideLinkSignatures()
    line = '%s - "%s %s HTTP/%s" %d'  # uvicorn's access line and its arguments
    for path, shown in [
        ("/images/abc?e=1796011200&s=qXr2-_9", "/images/abc?e=1796011200&s=…"),
        ("/images/abc?s=qXr2&e=17", "/images/abc?s=…&e=17"),
        ("/graphql?query=%7Bs%7D&sort=s=1", "/graphql?query=%7Bs%7D&sort=s=1"),  # not `s`
    ]:
        record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, line,
                                   ("127.0.0.1:5000", "GET", path, "1.1", 200), None)  # fmt: skip
        assert hide.filter(record)
        assert record.getMessage() == f'127.0.0.1:5000 - "GET {shown} HTTP/1.1" 200'
