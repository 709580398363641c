"""Errors over HTTP: domain errors carry their code, unexpected ones are masked and logged
with the request id, and a rejected mutation changes nothing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from stargraph.comfy.sim_config import RECORDED_CHECKPOINT
from tests.e2e.harness import GraphQLError, running_stargraph

SUBMIT = "mutation($i: Text2ImageInput!) { submitText2Image(input: $i) { id } }"
STATE = (
    "{ balance { available frozen } jobs { edges { node { id } } } "
    "ledger { edges { node { id } } } }"
)


async def _code(call: Awaitable[object]) -> tuple[str | None, dict[str, Any]]:
    with pytest.raises(GraphQLError) as caught:
        await call
    return caught.value.code, caught.value.errors[0].get("extensions", {})


async def test_domain_errors_carry_codes_and_fields(tmp_path: Path) -> None:
    async with running_stargraph(
        tmp_path, worker=False, default_model=RECORDED_CHECKPOINT
    ) as stack:
        user = await stack.client.register("ana")
        code, ext = await _code(user.data(SUBMIT, {"i": {"prompt": "x", "width": 65}}))
        assert (code, ext["field"]) == ("BAD_USER_INPUT", "width")
        code, ext = await _code(
            user.data(SUBMIT, {"i": {"prompt": "x", "negativePrompt": "a\x07"}})
        )
        assert (code, ext["field"]) == ("BAD_USER_INPUT", "negativePrompt")
        code, _ = await _code(user.data('query { job(id: "no-such-job") { id } }'))
        assert code == "NOT_FOUND"
        job = (await user.data(SUBMIT, {"i": {"prompt": "a cat"}}))["submitText2Image"]["id"]
        await user.data("mutation($id: ID!) { cancelJob(id: $id) { id } }", {"id": job})
        code, _ = await _code(
            user.data("mutation($id: ID!) { cancelJob(id: $id) { id } }", {"id": job})
        )
        assert code == "CONFLICT"
        code, _ = await _code(stack.client.register("ana"))
        assert code == "CONFLICT"
        code, ext = await _code(
            stack.client.data(
                'mutation { login(username: "ana", password: "wrong password") { token } }'
            )
        )
        assert code == "UNAUTHENTICATED"
        code, ext = await _code(user.data("{ jobs(first: 1000) { edges { cursor } } }"))
        assert (code, ext["field"]) == ("BAD_USER_INPUT", "first")
        code, ext = await _code(user.data('{ gallery(after: "bm90LW91cnM") { edges { cursor } } }'))
        assert (code, ext["field"]) == ("BAD_USER_INPUT", "after")
        bad_token = stack.client.as_user("not-a-token")
        code, _ = await _code(bad_token.data("{ me { id } }"))
        assert code == "UNAUTHENTICATED"


async def test_rejected_mutations_change_nothing(tmp_path: Path) -> None:
    async with running_stargraph(
        tmp_path, worker=False, default_model=RECORDED_CHECKPOINT, translation_fallback="error"
    ) as stack:  # Ollama is not reachable: Chinese prompts cannot be translated
        user = await stack.client.register("bob")
        before = await user.data(STATE)
        rejected = [
            ({"prompt": "夕阳下的海边"}, "TRANSLATION_UNAVAILABLE"),
            ({"prompt": "a cat", "count": 11}, "BAD_USER_INPUT"),
            ({"prompt": "a cat", "count": 8, "idempotencyKey": "k1"}, None),
            ({"prompt": "a cat", "count": 8}, "INSUFFICIENT_POINTS"),
            ({"prompt": "a cat", "sampler": "no-such-sampler"}, "BAD_USER_INPUT"),
            ({"prompt": "a cat", "priority": "URGENT"}, "FORBIDDEN"),
        ]
        accepted = None
        for fields, expected in rejected:
            if expected is None:  # 80 points held: the next 8-image job cannot be afforded
                accepted = (await user.data(SUBMIT, {"i": fields}))["submitText2Image"]["id"]
                before = await user.data(STATE)
                continue
            code, _ = await _code(user.data(SUBMIT, {"i": fields}))
            assert code == expected, fields
            assert await user.data(STATE) == before, f"{fields} changed something"
        again = await user.data(
            SUBMIT, {"i": {"prompt": "a cat", "count": 8, "idempotencyKey": "k1"}}
        )
        assert again["submitText2Image"]["id"] == accepted  # same key: same job, held once
        assert await user.data(STATE) == before


async def test_unexpected_errors_are_masked_and_logged_with_the_request_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_stargraph(tmp_path, worker=False) as stack:

        def broken() -> list[str]:
            raise RuntimeError("secret internal detail")

        monkeypatch.setattr(stack.services.catalog, "names", broken)
        caplog.set_level(logging.ERROR, logger="stargraph.api")
        response = await stack.client.http.post(
            "/graphql", json={"query": "{ workflows { name } }"}, headers={"X-Request-ID": "req-42"}
        )
        body = response.json()
        error = body["errors"][0]
        assert "secret" not in error["message"]
        assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-42"}
        assert response.headers["x-request-id"] == "req-42"
        logged = [r for r in caplog.records if "req-42" in r.getMessage()]
        assert logged and logged[0].exc_info is not None
