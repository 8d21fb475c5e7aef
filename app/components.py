"""Gradio components whose input checks give one readable message instead of a stack trace.

They render with Gradio's own front-end (``is_template``) and only change what the server does with a value:

* :class:`Slider` / :class:`Number`: non-numbers, NaN, ±inf and out-of-range values are refused by name
  ("Steps must be between 1 and 500, got 1e+09").
* :class:`Text`: text longer than its limit (default ``MAX_TEXT``) is refused by name before a handler runs.
* :class:`UploadImage`: hands the handler the uploaded file's path (or the bytes of a ``data:`` URL) *without*
  decoding it, so :func:`attack_engine.images.read_image` does all the checking (Gradio's own preprocessing
  would open any file with PIL first and fail with an unreadable error).
* :class:`UploadImage` and :class:`MaskFile` refuse ``http(s)://`` addresses in hosted mode, before Gradio would
  download them (no server-side fetches of user-chosen addresses).  Paths outside Gradio's upload folder are
  refused by Gradio itself ("not uploaded by a user").
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
from typing import Any

import gradio as gr
from gradio import component_meta
from gradio_client import utils as client_utils

from app.limits import get_limits
from app.observe import event


def _refuse(msg: str) -> gr.Error:
    """The user's one message, also logged as a ``rejected`` event (the input is not logged)."""
    event("rejected", endpoint="input", error=msg)
    e = gr.Error(msg, print_exception=False)
    e.logged = True  # app.server does not log it twice
    return e


@contextlib.contextmanager
def _no_stub_files():
    """Gradio's component metaclass writes a ``.pyi`` stub next to the module of every component class defined;
    the classes below need none, so that step is skipped while they are defined (nothing is written here)."""
    orig = component_meta.create_or_modify_pyi
    component_meta.create_or_modify_pyi = lambda *a, **k: None
    try:
        yield
    finally:
        component_meta.create_or_modify_pyi = orig


def _label(c: gr.components.Component) -> str:
    return str(getattr(c, "label", None) or "value")


def _finite(c: gr.components.Component, payload: Any) -> float:
    if isinstance(payload, bool) or not isinstance(payload, (int, float)):
        raise _refuse(f"{_label(c)} must be a number, got {str(payload)[:40]!r}")
    if isinstance(payload, int) and abs(payload) > 2**63:  # 10**400 is a JSON number too; no float holds it
        raise _refuse(f"{_label(c)} must be a number of sensible size, got one with {len(str(abs(payload)))} digits")
    if not math.isfinite(payload):
        raise _refuse(f"{_label(c)} must be a finite number, got {payload}")
    lo, hi = getattr(c, "minimum", None), getattr(c, "maximum", None)
    if (lo is not None and payload < lo) or (hi is not None and payload > hi):
        rng = (f"between {lo:g} and {hi:g}" if lo is not None and hi is not None
               else (f"at least {lo:g}" if lo is not None else f"at most {hi:g}"))
        raise _refuse(f"{_label(c)} must be {rng}, got {payload:g}")
    return payload


with _no_stub_files():
    class Slider(gr.Slider):
        is_template = True

        def preprocess(self, payload: Any) -> float:
            return super().preprocess(_finite(self, payload))


    class Number(gr.Number):
        is_template = True

        def preprocess(self, payload: Any) -> float | int | None:
            if payload is None:
                return None
            return super().preprocess(_finite(self, payload))


with _no_stub_files():
    class Text(gr.Textbox):
        """``gr.Textbox`` whose ``max_length`` (default :data:`app.limits.MAX_TEXT`) the server enforces: a longer
        value, or one that is not text, is refused by name before any handler sees it."""

        is_template = True

        def preprocess(self, payload: Any) -> str | None:
            from app.limits import MAX_TEXT

            if payload is None:
                return None
            if not isinstance(payload, (str, int, float)) or isinstance(payload, bool):
                raise _refuse(f"{_label(self)} must be text")
            text, limit = str(payload), int(self.max_length or MAX_TEXT)
            if len(text) > limit:
                raise _refuse(f"{_label(self)} is {len(text):,} characters long; at most {limit} are accepted")
            return super().preprocess(text)


def _hosted(c: Any) -> bool:
    """The app's hosted flag, set on the component by the app (``c.hosted``), else from the environment."""
    h = getattr(c, "hosted", None)
    return get_limits().hosted if h is None else bool(h)


def _refuse_urls(c: Any, path: Any) -> None:
    if path is not None and client_utils.is_http_url_like(str(path)) and _hosted(c):
        raise _refuse("this demo takes uploaded files only, not web addresses")


with _no_stub_files():
    class UploadImage(gr.Image):
        """``gr.Image`` whose handler receives the uploaded file's path (or bytes), undecoded."""

        is_template = True

        async def async_move_resource_to_block_cache(self, url_or_file_path):
            _refuse_urls(self, url_or_file_path)
            return await super().async_move_resource_to_block_cache(url_or_file_path)

        def preprocess(self, payload: Any) -> str | bytes | None:
            if payload is None:
                return None
            url = getattr(payload, "url", None) or ""
            if url.startswith("data:"):
                head, _, data = url.partition(",")
                mb_ = float(getattr(self, "max_upload_mb", None) or get_limits().max_upload_mb)
                if ";base64" not in head or len(data) > int(mb_ * 2**20) * 4 // 3 + 4:
                    raise _refuse(f"inline image must be base64 and at most {mb_:g} MB")
                try:
                    return base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError):
                    raise _refuse("inline image is not valid base64") from None
            path = getattr(payload, "path", None)
            if not path:
                raise _refuse("no image file was received")
            _refuse_urls(self, path)
            return str(path)


    class MaskFile(gr.File):
        is_template = True

        async def async_move_resource_to_block_cache(self, url_or_file_path):
            _refuse_urls(self, url_or_file_path)
            return await super().async_move_resource_to_block_cache(url_or_file_path)

        def preprocess(self, payload: Any) -> Any:
            if payload is not None:
                _refuse_urls(self, getattr(payload, "path", None))
            return super().preprocess(payload)
