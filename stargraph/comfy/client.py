"""HTTP client of one ComfyUI server: submit prompts, read queue and history, fetch images.

Errors, all `ComfyError`:

    ComfyError
    ├── ComfyUnavailable       unreachable, timed out, or a 5xx — try again later
    │                          (`maybe_processed`: the server may have acted on the request)
    ├── ComfyValidationError   POST /prompt answered 400: nothing was queued
    ├── ComfyNotFound          /view has no such file
    └── ComfyProtocolError     an answer that does not follow the protocol

Timeouts are generous (protocol §3.12: HTTP answers can take ~0.5 s while a prompt runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from stargraph.comfy.messages import (
    ExecutionError,
    ExecutionInterrupted,
    ImageRef,
    MalformedFrame,
    Message,
    images_of,
    parse_event,
)
from stargraph.domain.capabilities import Capabilities
from stargraph.http_client import (
    ConnectFailed,
    ExchangeFailed,
    HttpClient,
    Origin,
    Response,
    Timeouts,
)

DEFAULT_TIMEOUTS = Timeouts(connect=5.0, total=30.0)
VIEW_TIMEOUTS = Timeouts(connect=5.0, total=120.0)
MAX_SUMMARY_CHARS = 1000


class ComfyError(Exception):
    """Base of every failure talking to ComfyUI; `message` is safe to show and store."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ComfyUnavailable(ComfyError):
    """The server could not be reached or failed (connection error, timeout, 5xx)."""

    def __init__(self, message: str, *, maybe_processed: bool = False) -> None:
        super().__init__(message)
        self.maybe_processed = maybe_processed


class ComfyValidationError(ComfyError):
    """POST /prompt was rejected (400). `message` summarises `node_errors` for people."""

    def __init__(self, message: str, error_type: str, node_errors: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.node_errors = node_errors


class ComfyNotFound(ComfyError):
    """The file asked from /view does not exist."""


class ComfyProtocolError(ComfyError):
    """An answer the protocol does not allow (not JSON, wrong shape, unexpected status)."""


@dataclass(frozen=True, slots=True)
class PromptAccepted:
    """A queued prompt. Non-empty `node_errors` means only some outputs will run."""

    prompt_id: str
    number: float
    node_errors: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_partial(self) -> bool:
        return bool(self.node_errors)


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """Prompt ids running and waiting; `pending` is in run order."""

    running: tuple[str, ...]
    pending: tuple[str, ...]

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.running or prompt_id in self.pending


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A finished prompt as `/history/{id}` reports it."""

    prompt_id: str
    status_str: str | None
    completed: bool
    outputs: Mapping[str, Mapping[str, Any]]
    images: Mapping[str, tuple[ImageRef, ...]]
    messages: tuple[Message, ...]

    @property
    def succeeded(self) -> bool:
        return self.status_str == "success" and self.completed

    @property
    def all_images(self) -> tuple[ImageRef, ...]:
        return tuple(image for images in self.images.values() for image in images)

    @property
    def error(self) -> ExecutionError | None:
        return next((m for m in self.messages if isinstance(m, ExecutionError)), None)

    @property
    def interrupted(self) -> ExecutionInterrupted | None:
        return next((m for m in self.messages if isinstance(m, ExecutionInterrupted)), None)


class ComfyClient:
    """One ComfyUI server. Pass a shared `http` client to share its pools; else one is made."""

    def __init__(
        self,
        base_url: str,
        http: HttpClient | None = None,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        view_timeouts: Timeouts = VIEW_TIMEOUTS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._origin = Origin.parse(self.base_url)
        self._http = http or HttpClient()
        self._owns_http = http is None
        self._timeouts = timeouts
        self._view_timeouts = view_timeouts

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # prompts --------------------------------------------------------------------------------

    async def post_prompt(
        self,
        graph: Mapping[str, Any],
        prompt_id: str,
        client_id: str,
        *,
        front: bool = False,
        extra_data: Mapping[str, Any] | None = None,
    ) -> PromptAccepted:
        """Queue `graph` under our `prompt_id`; its events go to the socket of `client_id`."""
        body: dict[str, Any] = {"prompt": graph, "prompt_id": prompt_id, "client_id": client_id}
        if front:
            body["front"] = True
        if extra_data:
            body["extra_data"] = dict(extra_data)
        response = await self._send("POST", "/prompt", json_body=body)
        if response.status == 400:
            raise _validation_error(response)
        data = _object(self._ok(response))
        return PromptAccepted(
            str(data.get("prompt_id", prompt_id)),
            data.get("number", 0),
            data.get("node_errors") or {},
        )

    async def queue(self) -> QueueSnapshot:
        data = _object(self._ok(await self._send("GET", "/queue")))
        try:
            running = tuple(str(item[1]) for item in data.get("queue_running", []))
            waiting = sorted(data.get("queue_pending", []), key=lambda i: (i[0], str(i[1])))
            return QueueSnapshot(running, tuple(str(item[1]) for item in waiting))
        except (IndexError, KeyError, TypeError) as exc:
            raise ComfyProtocolError(f"unexpected /queue answer: {exc!r}") from exc

    async def queue_remaining(self) -> int:
        """Running plus waiting prompts (GET /prompt)."""
        data = _object(self._ok(await self._send("GET", "/prompt")))
        return int(data.get("exec_info", {}).get("queue_remaining", 0))

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop `prompt_id` if it is the running prompt (None: whatever runs)."""
        body = None if prompt_id is None else {"prompt_id": prompt_id}
        self._ok(await self._send("POST", "/interrupt", json_body=body))

    async def delete_from_queue(self, prompt_ids: Iterable[str]) -> None:
        """Remove waiting prompts (a running one is not touched: interrupt it)."""
        self._ok(await self._send("POST", "/queue", json_body={"delete": list(prompt_ids)}))

    async def clear_queue(self) -> None:
        self._ok(await self._send("POST", "/queue", json_body={"clear": True}))

    # history and files ----------------------------------------------------------------------

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        """The finished prompt, or None if ComfyUI has no entry (still queued, lost, deleted)."""
        data = _object(self._ok(await self._send("GET", f"/history/{prompt_id}")))
        raw = data.get(prompt_id)
        return None if raw is None else _history_entry(prompt_id, raw)

    async def delete_history(self, prompt_id: str | Iterable[str]) -> None:
        ids = [prompt_id] if isinstance(prompt_id, str) else list(prompt_id)
        self._ok(await self._send("POST", "/history", json_body={"delete": ids}))

    async def view(
        self, filename: str | ImageRef, subfolder: str = "", type: str = "output"
    ) -> bytes:
        """The bytes of an output file."""
        image = filename if isinstance(filename, ImageRef) else ImageRef(filename, subfolder, type)
        params = {"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        response = await self._send("GET", "/view", params=params, timeouts=self._view_timeouts)
        if response.status == 404:
            raise ComfyNotFound(f"no file {image.subfolder}/{image.filename} ({image.type})")
        return self._ok(response).body

    # server ---------------------------------------------------------------------------------

    async def object_info(self) -> Capabilities:
        """Checkpoints, samplers and schedulers this server offers (re-read on every call)."""
        loader = await self.node_info("CheckpointLoaderSimple")
        sampler = await self.node_info("KSampler")
        return Capabilities(
            checkpoints=_combo(loader, "ckpt_name"),
            samplers=_combo(sampler, "sampler_name"),
            schedulers=_combo(sampler, "scheduler"),
        )

    async def node_info(self, class_type: str) -> dict[str, Any] | None:
        """One node class's definition, or None if the server does not have it."""
        data = _object(self._ok(await self._send("GET", f"/object_info/{class_type}")))
        info = data.get(class_type)
        return info if isinstance(info, dict) else None

    async def system_stats(self) -> dict[str, Any]:
        """Versions and devices; a cheap health probe."""
        return _object(self._ok(await self._send("GET", "/system_stats")))

    async def features(self) -> dict[str, Any]:
        return _object(self._ok(await self._send("GET", "/features")))

    async def free(self, *, unload_models: bool = False, free_memory: bool = False) -> None:
        body = {"unload_models": unload_models, "free_memory": free_memory}
        self._ok(await self._send("POST", "/free", json_body=body))

    # plumbing -------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        timeouts: Timeouts | None = None,
    ) -> Response:
        what = f"{method} {path}"
        try:
            response = await self._http.request(
                self._origin,
                method,
                path,
                json_body=json_body,
                params=params,
                timeouts=timeouts or self._timeouts,
            )
        except ConnectFailed as exc:
            raise ComfyUnavailable(f"{what}: {exc}") from exc
        except ExchangeFailed as exc:
            raise ComfyUnavailable(f"{what}: {exc}", maybe_processed=True) from exc
        if response.status >= 500:
            raise ComfyUnavailable(
                f"{what}: ComfyUI answered {response.status}",
                maybe_processed=response.status != 503,
            )
        return response

    @staticmethod
    def _ok(response: Response) -> Response:
        if response.status != 200:
            raise ComfyProtocolError(
                f"{response.method} {response.path}: unexpected status {response.status}"
            )
        return response


def _object(response: Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise ComfyProtocolError(f"{response.path}: not JSON") from exc
    if not isinstance(data, dict):
        raise ComfyProtocolError(f"{response.path}: expected an object")
    return data


def _validation_error(response: Response) -> ComfyValidationError:
    try:
        body = _object(response)
    except ComfyProtocolError:
        body = {}
    error = body.get("error")
    error = error if isinstance(error, dict) else {}
    node_errors = body.get("node_errors")
    node_errors = node_errors if isinstance(node_errors, dict) else {}
    message = summarise(error, node_errors) or response.text()[:MAX_SUMMARY_CHARS]
    return ComfyValidationError(message, str(error.get("type", "")), node_errors)


def summarise(error: Mapping[str, Any], node_errors: Mapping[str, Any]) -> str:
    """One readable line from a 400 body, e.g.
    `Prompt outputs failed validation: node 3 (KSampler): sampler_name: 'nope' not in (…)`."""
    head = str(error.get("message") or error.get("type") or "invalid prompt")
    parts = []
    for node_id, entry in node_errors.items():
        class_type = entry.get("class_type", "?") if isinstance(entry, Mapping) else "?"
        for reason in (entry.get("errors") or []) if isinstance(entry, Mapping) else []:
            detail = reason.get("details") or reason.get("message") or reason.get("type")
            if reason.get("type") in ("required_input_missing", "bad_linked_input"):
                detail = f"{reason.get('message')}: {detail}"
            parts.append(f"node {node_id} ({class_type}): {detail}")
    if not parts and error.get("details"):
        parts.append(str(error["details"]))
    text = f"{head}: {'; '.join(parts)}" if parts else head
    return text if len(text) <= MAX_SUMMARY_CHARS else text[: MAX_SUMMARY_CHARS - 1] + "…"


def _combo(info: Mapping[str, Any] | None, name: str) -> tuple[str, ...]:
    """The options of a combo input, in either form (`[[...], {}]` or `["COMBO", {options}]`)."""
    if info is None:
        return ()
    spec = info.get("input", {}).get("required", {}).get(name)
    if not spec:
        return ()
    if isinstance(spec[0], list):
        return tuple(str(option) for option in spec[0])
    if spec[0] == "COMBO" and len(spec) > 1:
        return tuple(str(option) for option in spec[1].get("options", []))
    return ()


def _history_entry(prompt_id: str, raw: Mapping[str, Any]) -> HistoryEntry:
    status = raw.get("status") or {}
    outputs = raw.get("outputs") or {}
    try:
        images = {str(node): images_of(output) for node, output in outputs.items()}
    except (MalformedFrame, KeyError, AttributeError) as exc:
        raise ComfyProtocolError(f"history of {prompt_id}: bad outputs ({exc!r})") from exc
    return HistoryEntry(
        prompt_id=prompt_id,
        status_str=status.get("status_str"),
        completed=bool(status.get("completed", False)),
        outputs=outputs,
        images=images,
        messages=tuple(_messages(status.get("messages") or [])),
    )


def _messages(pairs: list[Any]) -> Iterable[Message]:
    for pair in pairs:
        try:
            yield parse_event(str(pair[0]), pair[1])
        except (MalformedFrame, IndexError, TypeError):
            continue
