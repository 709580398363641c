"""HTTP and WebSocket endpoints of the ComfyUI simulator, answering like the recordings (§1, §2.1).

Every ComfyUI route is served twice, bare and under `/api`. `/sim/*` are the simulator's own
control endpoints (timing records, faults, restart, socket drop) for drills that run it in
another process; they are never refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import posixpath
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from stargraph.comfy.encoding import encode_json, encode_status
from stargraph.comfy.sim_hub import Client
from stargraph.comfy.sim_images import OUTPUT_TYPES, render_png, view_variant
from stargraph.comfy.sim_validate import BrokenPrompt, PromptRejected

if TYPE_CHECKING:
    from stargraph.comfy.simulator import Simulator

SERVER_FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}
_ANNOTATIONS = {" [output]": "output", " [input]": "input", " [temp]": "temp"}
MODEL_FOLDERS = ["checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models",
                 "clip_vision", "style_models", "embeddings", "diffusers", "vae_approx",
                 "controlnet", "gligen", "upscale_models", "custom_nodes", "hypernetworks",
                 "photomaker", "classifiers", "model_patches", "audio_encoders"]  # fmt: skip
Handler = Callable[[Request], Awaitable[Response]]


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status, media_type="application/json; charset=utf-8")


def empty(status: int = 200) -> Response:
    return Response(status_code=status)


def server_trouble() -> Response:
    body = "500 Internal Server Error\n\nServer got itself in trouble"
    return Response(body, 500, media_type="text/plain; charset=utf-8")


async def _json_body(request: Request) -> Any:
    body = await request.body()
    return json.loads(body) if body else None


class Endpoints:
    """The request handlers of one simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.engine = sim.engine

    def routes(self) -> list[BaseRoute]:
        table: list[tuple[str, Handler, str]] = [
            ("/prompt", self.get_prompt, "GET"),
            ("/prompt", self.post_prompt, "POST"),
            ("/queue", self.get_queue, "GET"),
            ("/queue", self.post_queue, "POST"),
            ("/interrupt", self.post_interrupt, "POST"),
            ("/history", self.get_history, "GET"),
            ("/history", self.post_history, "POST"),
            ("/history/{prompt_id}", self.get_history_item, "GET"),
            ("/view", self.view, "GET"),
            ("/object_info", self.object_info, "GET"),
            ("/object_info/{node_class}", self.object_info_class, "GET"),
            ("/system_stats", self.system_stats, "GET"),
            ("/features", self.features, "GET"),
            ("/models", self.models, "GET"),
            ("/models/{folder}", self.model_files, "GET"),
            ("/embeddings", self.embeddings, "GET"),
            ("/free", self.post_free, "POST"),
        ]
        routes: list[BaseRoute] = []
        for prefix in ("", "/api"):
            routes += [Route(prefix + path, fn, methods=[verb]) for path, fn, verb in table]
            routes.append(WebSocketRoute(prefix + "/ws", self.websocket))
        routes += [
            Route("/sim/records", self.sim_records, methods=["GET"]),
            Route("/sim/faults", self.sim_faults, methods=["GET", "POST"]),
            Route("/sim/restart", self.sim_restart, methods=["POST"]),
            Route("/sim/drop-sockets", self.sim_drop_sockets, methods=["POST"]),
        ]
        return routes

    # prompts and queue ----------------------------------------------------------------------

    async def get_prompt(self, request: Request) -> Response:
        return json_response({"exec_info": {"queue_remaining": self.engine.queue_remaining()}})

    async def post_prompt(self, request: Request) -> Response:
        self.engine.post_times.append(time.monotonic())
        try:
            body = await _json_body(request)
            if isinstance(body, list):
                body = {}  # the server looks keys up with `in`: a list has no "prompt"
            result = self.engine.post_prompt(body)
        except PromptRejected as rejected:
            return json_response(
                {"error": rejected.error, "node_errors": rejected.node_errors}, 400
            )
        except (BrokenPrompt, ValueError, TypeError, AttributeError):
            return server_trouble()
        return json_response(result)

    async def get_queue(self, request: Request) -> Response:
        return json_response(self.engine.queue_lists())

    async def post_queue(self, request: Request) -> Response:
        body = await _json_body(request) or {}
        if body.get("clear"):
            self.engine.clear_pending()
        if "delete" in body:
            self.engine.delete_pending([str(i) for i in body["delete"]])
        return empty()

    async def post_interrupt(self, request: Request) -> Response:
        body = await _json_body(request)
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        self.engine.interrupt(None if prompt_id is None else str(prompt_id))
        return empty()

    async def post_free(self, request: Request) -> Response:
        body = await _json_body(request) or {}
        self.engine.free(bool(body.get("free_memory", False)))
        return empty()

    # history --------------------------------------------------------------------------------

    async def get_history(self, request: Request) -> Response:
        query = request.query_params
        max_items = int(query["max_items"]) if "max_items" in query else None
        offset = int(query.get("offset", -1))
        return json_response(self.engine.history_items(max_items, offset))

    async def get_history_item(self, request: Request) -> Response:
        prompt_id = request.path_params["prompt_id"]
        entry = self.engine.history.get(prompt_id)
        return json_response({} if entry is None else {prompt_id: entry})

    async def post_history(self, request: Request) -> Response:
        body = await _json_body(request) or {}
        if body.get("clear"):
            self.engine.history.clear()
        if "delete" in body:
            self.engine.delete_history([str(i) for i in body["delete"]])
        return empty()

    # files ----------------------------------------------------------------------------------

    async def view(self, request: Request) -> Response:
        query = request.query_params
        if "filename" not in query:
            return empty(404)
        filename, kind = _annotated(query["filename"])
        if not filename or filename[0] == "/" or ".." in filename:
            return empty(400)
        kind = kind or query.get("type", "output")
        if kind not in OUTPUT_TYPES:
            return empty(400)
        subfolder = _inside(query.get("subfolder", ""))
        if subfolder is None:
            return empty(403)
        filename = posixpath.basename(filename)
        stored = self.engine.store.get(kind, subfolder, filename)
        if stored is None:
            return empty(404)
        png = await asyncio.to_thread(render_png, stored)
        variant = view_variant(png, query.get("preview"), query.get("channel"))
        headers = {"Content-Disposition": f'filename="{filename}"'}
        return Response(variant.body, media_type=variant.media_type, headers=headers)

    # capabilities ---------------------------------------------------------------------------

    async def object_info(self, request: Request) -> Response:
        return json_response(self.engine.info)

    async def object_info_class(self, request: Request) -> Response:
        name = request.path_params["node_class"]
        info = self.engine.info.get(name)
        return json_response({} if info is None else {name: info})

    async def system_stats(self, request: Request) -> Response:
        return json_response(_system_stats())

    async def features(self, request: Request) -> Response:
        return json_response(SERVER_FEATURES)

    async def models(self, request: Request) -> Response:
        return json_response(MODEL_FOLDERS)

    async def model_files(self, request: Request) -> Response:
        folder = request.path_params["folder"]
        if folder not in MODEL_FOLDERS:
            return empty(404)
        offered = self.sim.config.offered_checkpoints if folder == "checkpoints" else ()
        return json_response(list(offered))

    async def embeddings(self, request: Request) -> Response:
        return json_response([])

    # WebSocket ------------------------------------------------------------------------------

    async def websocket(self, ws: WebSocket) -> None:
        await ws.accept()
        sid = ws.query_params.get("clientId") or uuid.uuid4().hex
        client = Client(ws, sid)
        hub = self.sim.hub
        hub.register(client)
        try:
            await hub.send_now(client, encode_status(self.engine.queue_remaining(), sid))
            node = self.engine.current_node
            if self.engine.running_client_id == sid and node is not None:
                await hub.send_now(client, encode_json("executing", {"node": node}))
            await self._listen(client)
        finally:
            hub.unregister(client)

    async def _listen(self, client: Client) -> None:
        first = True
        while True:
            message = await client.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                continue
            try:
                data = json.loads(text)
            except ValueError:
                continue
            if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                flags = data.get("data") or {}
                client.preview_metadata = bool(flags.get("supports_preview_metadata"))
                await self.sim.hub.send_now(client, encode_json("feature_flags", SERVER_FEATURES))
            first = False

    # simulator control ----------------------------------------------------------------------

    async def sim_records(self, request: Request) -> Response:
        records = [
            {**dataclasses.asdict(r), "busy_seconds": r.busy_seconds} for r in self.engine.records
        ]
        now = time.monotonic()
        return json_response({"now": now, "records": records, "post_times": self.engine.post_times})

    async def sim_faults(self, request: Request) -> Response:
        if request.method == "POST":
            body = await _json_body(request) or {}
            names = {f.name for f in dataclasses.fields(self.sim.faults)}
            for key, value in body.items():
                if key in names:
                    setattr(self.sim.faults, key, value)
        return json_response(dataclasses.asdict(self.sim.faults))

    async def sim_restart(self, request: Request) -> Response:
        await self.sim.restart()
        return empty()

    async def sim_drop_sockets(self, request: Request) -> Response:
        await self.sim.drop_sockets()
        return empty()


def _annotated(name: str) -> tuple[str, str | None]:
    for suffix, kind in _ANNOTATIONS.items():
        if name.endswith(suffix.strip()):
            return name[: -len(suffix)], kind
    return name, None


def _inside(subfolder: str) -> str | None:
    """The normalised subfolder, or None when it escapes the folder."""
    path = posixpath.normpath(posixpath.join("/base", subfolder))
    if path == "/base":
        return ""
    if not path.startswith("/base/"):
        return None
    return path[len("/base/") :]


def _system_stats() -> dict[str, Any]:
    return {
        "system": {
            "os": "posix",
            "ram_total": 0,
            "ram_free": 0,
            "comfyui_version": "0.3.64",
            "required_frontend_version": "1.27.10",
            "installed_templates_version": "0.1.95",
            "required_templates_version": "0.1.95",
            "python_version": sys.version,
            "pytorch_version": "none (StarGraph simulator)",
            "embedded_python": False,
            "argv": ["stargraph", "comfyui-sim"],
        },
        "devices": [
            {
                "name": "simulated",
                "type": "cpu",
                "index": None,
                "vram_total": 0,
                "vram_free": 0,
                "torch_vram_total": 0,
                "torch_vram_free": 0,
            }
        ],
    }


class FaultGate:
    """ASGI middleware for the HTTP-level faults: refusal (503) and slow answers."""

    def __init__(self, app: ASGIApp, sim: Simulator) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith("/sim/"):
            await self.app(scope, receive, send)
            return
        faults = self.sim.faults
        if faults.refuse:
            await _refuse(scope, receive, send)
            return
        if faults.http_delay > 0 and scope["type"] == "http":
            await asyncio.sleep(faults.http_delay)
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await empty(503)(scope, receive, send)
        return
    ws = WebSocket(scope, receive, send)
    if "websocket.http.response" in scope.get("extensions", {}):
        await ws.send_denial_response(empty(503))
    else:
        await ws.close(1013)


def build_app(sim: Simulator) -> ASGIApp:
    app = Starlette(routes=Endpoints(sim).routes())
    return FaultGate(app, sim)
