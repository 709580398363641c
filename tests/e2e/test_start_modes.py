"""How the service starts without its helpers: no Ollama in a simulated run, no ComfyUI."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from stargraph.bootstrap import SimulateOptions
from stargraph.comfy.sim_config import RECORDED_CHECKPOINT
from tests.e2e.harness import closed_port_url, free_port, running_stargraph, until_up

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


async def test_ctrl_c_stops_serve_quietly_and_its_log_names_one_server(tmp_path: Path) -> None:
    """The README's `stargraph serve --simulate`, stopped with Ctrl+C: exit 0, no traceback,
    uvicorn's lines, access lines included, only for the API (the embedded simulator's would
    read as its own), and no image link's signature in them."""
    port = free_port()
    env = {
        **os.environ,
        "STARGRAPH_DATABASE_URL": f"sqlite://{tmp_path / 'demo.sqlite3'}",
        "STARGRAPH_STORAGE_DIR": str(tmp_path / "images"),
        "STARGRAPH_OLLAMA_URL": closed_port_url(),
        "STARGRAPH_LOG_LEVEL": "INFO",
    }
    env.pop("STARGRAPH_REDIS_URL", None)  # the embedded default
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - a spawn, before anything else runs
            [sys.executable, "-m", "stargraph", "serve", "--simulate", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            await until_up(url, proc, log)
            link = f"{url}/images/{uuid.uuid4()}?e=1&s=the-signature"
            async with httpx.AsyncClient() as http:
                assert (await http.get(link)).status_code in (403, 404)
            proc.send_signal(signal.SIGINT)
            code = await asyncio.to_thread(proc.wait, 30)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert text.count("Started server process") == 1, text
    assert text.count("Finished server process") == 1, text
    assert '"GET /healthz HTTP/1.1" 200' in text, text  # the API's access lines stay
    assert "/ws?clientId=" not in text, text  # the simulator's socket is not the API's
    assert "the-signature" not in text and "?e=1&s=…" in text, text  # a link is a credential
    assert "worker stopped" in text, text
