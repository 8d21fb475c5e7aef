"""The HTTP edge of the app: what every request passes before Gradio sees it, and the refusals Gradio makes
itself turned into one readable message and one ``rejected`` log line.

:class:`EdgeGuard` (an ASGI middleware, installed through ``launch(app_kwargs=...)`` by
:func:`app.launch.launch_kwargs`):

* in hosted mode refuses, before any route runs, every path by which Gradio would fetch, resolve or proxy an
  address a request names: ``/file=<url>`` (and ``/file/<url>``, percent-encoded or not, any scheme) and
  ``/proxy=...``.  Local files Gradio serves (its cache, the examples) are unaffected;
* refuses request bodies above a size (``Content-Length`` or counted while streaming): uploads up to
  4 × ``TSALLIS_MAX_UPLOAD_MB`` (Gradio refuses each file over the limit itself), every other request up to
  :func:`max_body` (an inline base64 image of that size);
* logs a ``rejected`` line for every 4xx / 5xx answer with the route family only (never the rest of the path,
  the query or the body).

:func:`install_refusal_hooks` wraps a Blocks' input preprocessing and queue admission: a value a component
refuses ("not in the list of choices", a number no float holds, ...) or a full queue becomes one ``gr.Error``
naming the control, without a traceback or the value, and one ``rejected`` line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import gradio as gr

from app.inputs import scrub_paths
from app.limits import Limits
from app.observe import event

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

_FETCH_ROUTE = re.compile(r"/(file=|file/|proxy=)(.*)$", re.S)
_SCHEME = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*:")
UPLOAD_PATH = "/gradio_api/upload"


def names_an_address(path: str) -> bool:
    """Whether a request path asks Gradio to fetch or proxy something: ``proxy=`` always, ``file=`` / ``file/``
    when what follows is (after up to three rounds of percent-decoding) a URL with a scheme or ``//host``."""
    m = _FETCH_ROUTE.search(path)
    if m is None:
        return False
    if m.group(1) == "proxy=":
        return True
    rest = m.group(2)
    for _ in range(3):
        rest = unquote(rest)
    rest = rest.strip()
    return bool(_SCHEME.match(rest)) or rest.startswith(("//", "\\\\", "/\\", "\\/"))


def route_family(path: str) -> str:
    """``/gradio_api/queue/join`` -> itself; ``/gradio_api/file=/tmp/x.png`` -> ``/gradio_api/file=``: a log
    names the route, never what the request put in it."""
    m = _FETCH_ROUTE.search(path)
    if m is not None:
        return path[: m.start()] + "/" + m.group(1)
    parts = path.split("/")
    return "/".join(parts[:4])[:80]


def max_body(limits: Limits) -> int:
    """Largest non-upload request body: an inline (base64) image of the upload limit plus 256 KiB of the rest."""
    return int(limits.max_upload_mb * 2**20 * 4 / 3) + 256 * 1024


async def _answer(send: Callable, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class EdgeGuard:
    """ASGI middleware: hosted-mode fetch refusal, body size limits, ``rejected`` lines for error answers."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.hosted = limits.hosted
        self.upload_limit = int(4 * limits.max_upload_mb * 2**20) + 2**20  # a few files; Gradio checks each
        self.body_limit = max_body(limits)

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path") or ""
        family = route_family(path)
        if self.hosted and (names_an_address(path) or names_an_address((scope.get("raw_path") or b"").decode(
                "latin-1"))):
            event("rejected", endpoint=family, status=403, error="address in a file route (hosted mode)")
            return await _answer(send, 403, "this demo serves only its own files; it fetches no addresses")
        limit = self.upload_limit if path.rstrip("/") == UPLOAD_PATH else self.body_limit
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            event("rejected", endpoint=family, status=413, error=f"request body over {limit} bytes")
            return await _answer(send, 413, f"request too large: the maximum allowed size is {limit / 2**20:.0f} MB")
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            msg = await receive()
            if msg.get("type") == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:  # a streamed body past the limit: the app sees the client leave
                    event("rejected", endpoint=family, status=413, error=f"request body over {limit} bytes")
                    return {"type": "http.disconnect"}
            return msg

        async def watched(msg: dict) -> None:
            if msg.get("type") == "http.response.start" and msg.get("status", 200) >= 400:
                event("rejected", endpoint=family, status=int(msg["status"]))
            await send(msg)

        await self.app(scope, counted, watched)


def edge_middleware(limits: Limits) -> list:
    """``launch(app_kwargs={"middleware": edge_middleware(limits)})``."""
    from starlette.middleware import Middleware

    return [Middleware(EdgeGuard, limits=limits)]


# -- Gradio's own refusals --------------------------------------------------------------------------------------
def _component_name(block_fn: Any, err: BaseException) -> str:
    m = re.search(r"at index (\d+)", str(err))
    try:
        block = block_fn.inputs[int(m.group(1))] if m else None
    except (IndexError, ValueError, AttributeError):
        block = None
    return str(getattr(block, "label", None) or "an input")


def _endpoint(block_fn: Any) -> str:
    return str(getattr(block_fn, "api_name", None) or getattr(block_fn, "name", None) or "event")


def _choice_refused(block_fn: Any, inputs: list) -> str | None:
    """The message for a value outside a dropdown's / radio's choices, naming the control and the choices (not
    the value, which is request content)."""
    for block, value in zip(getattr(block_fn, "inputs", []), inputs or []):
        choices = [c[1] if isinstance(c, (tuple, list)) else c for c in (getattr(block, "choices", None) or [])]
        if not choices:
            continue
        values = value if isinstance(value, list) else [value]
        if any(v not in choices for v in values if v is not None):
            return f"{getattr(block, 'label', None) or 'a choice'}: the value is not in the list of choices " \
                   f"({', '.join(map(str, choices[:12]))})"
    return None


def refusal_message(block_fn: Any, inputs: list, e: BaseException) -> str:
    """What the user is told (and the log says) when Gradio's preprocessing refuses an input: the control and
    the reason, never the value or a server path."""
    text = str(e.message if isinstance(e, gr.Error) else e)
    if "not in the list of choices" in text:
        return _choice_refused(block_fn, inputs) or "a value is not in the list of choices"
    if type(e).__name__ == "InvalidPathError" or "not uploaded by a user" in text:
        return "a file path that was not uploaded by a user: only files this server received are accepted"
    if isinstance(e, gr.Error):  # our own components' messages name the control already
        return scrub_paths(text)[:300]
    return f"{_component_name(block_fn, e)}: this value cannot be used ({type(e.__cause__ or e).__name__})"


def install_refusal_hooks(demo: gr.Blocks) -> None:
    """Refusals in Gradio's input preprocessing and queue admission: one message, one ``rejected`` line."""
    preprocess = demo.preprocess_data

    async def preprocess_data(block_fn, inputs, state, explicit_call: bool = False):
        try:
            return await preprocess(block_fn, inputs, state, explicit_call)
        except Exception as e:
            msg = refusal_message(block_fn, inputs, e)
            if not getattr(e, "logged", False):  # app.components' refusals log themselves
                event("rejected", endpoint=_endpoint(block_fn), error=msg)
            raise gr.Error(msg, print_exception=False) from None

    demo.preprocess_data = preprocess_data
    queue = getattr(demo, "_queue", None)
    if queue is None or getattr(queue, "_tsallis_hooked", False):
        return
    push = queue.push

    async def hooked_push(body, request, username):
        ok, detail, status = await push(body, request, username)
        if not ok:
            event("rejected", endpoint="queue", status=status, error=str(detail)[:200])
        return ok, detail, status

    queue.push = hooked_push
    queue._tsallis_hooked = True
