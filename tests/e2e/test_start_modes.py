"""How the service starts without its helpers: no Ollama in a simulated run, no ComfyUI."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stargraph.bootstrap import SimulateOptions
from stargraph.comfy.sim_config import RECORDED_CHECKPOINT
from tests.e2e.harness import closed_port_url, running_stargraph

SUBMIT = """mutation($i: Text2ImageInput!) { submitText2Image(input: $i) {
  id status translation translatedPrompt positivePrompt } }"""


async def test_a_simulated_run_without_ollama_sends_prompts_untranslated(tmp_path: Path) -> None:
    async with running_stargraph(
        tmp_path,
        simulate=SimulateOptions(step_time_s=0.005),
        translation_fallback="error",
        default_model=RECORDED_CHECKPOINT,
    ) as stack:
        user = await stack.client.register("demo")
        job = (await user.data(SUBMIT, {"i": {"prompt": "夕阳下的海边"}}))["submitText2Image"]
        assert job["translation"] == "PASSTHROUGH" and job["translatedPrompt"] is None
        assert job["positivePrompt"].endswith("夕阳下的海边")


async def test_without_a_reachable_comfyui_it_starts_says_so_once_and_jobs_wait(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="stargraph")
    async with running_stargraph(
        tmp_path, comfyui_urls=[closed_port_url()], default_model=RECORDED_CHECKPOINT
    ) as stack:
        said = [r for r in caplog.records if "no ComfyUI reachable" in r.getMessage()]
        assert len(said) == 1
        user = await stack.client.register("early")
        job = (await user.data(SUBMIT, {"i": {"prompt": "a quiet harbour"}}))["submitText2Image"]
        again = await user.data("query($id: ID!) { job(id: $id) { status queuePosition } }",
                                {"id": job["id"]})  # fmt: skip
        assert again["job"] == {"status": "QUEUED", "queuePosition": 1}
        health = await stack.client.http.get("/healthz")
        assert health.status_code == 200
        assert (await stack.client.http.get("/readyz")).status_code == 503
