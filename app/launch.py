"""Serving the app: build the Blocks with its queue and refusal hooks, the ``launch()`` settings, and ``main``.

``python app.py`` / ``python -m app`` call :func:`main`; tests and scripts serve :func:`build_demo` with
:func:`launch_kwargs`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import gradio as gr

from app import gpu
from app.disk import clean_at_start, own_gradio_cache
from app.janitor import Janitor
from app.limits import Limits, LimitsError, apply_hosted_environment, get_limits
from app.logs import configure as configure_logging
from app.memory import tune_malloc
from app.observe import event
from app.server import edge_middleware, install_refusal_hooks
from app.sources import PRECOMPUTED_DIR, ExampleItem
from app.theme import CSS
from app.ui import App
from attack_engine.models import load_model


def build_demo(model_id: str | None = None, examples: list[ExampleItem] | None = None,
               precomputed_dir: Path = PRECOMPUTED_DIR, limits: Limits | None = None) -> gr.Blocks:
    """The app's Blocks, queued with the limits' queue size and concurrency (serve it with ``launch_kwargs()``).

    Gradio's file cache is this process's own folder (:func:`app.disk.own_gradio_cache`, unless the operator set
    ``GRADIO_TEMP_DIR``): Gradio names a cached copy by its content hash, so in the machine-wide ``<temp>/gradio``
    another Gradio app handing out the same picture deletes our copy when it shuts down (a 403 in the browser).
    Set before any component exists, so the Blocks' cache and the served file route agree.
    """
    own_gradio_cache()
    lim = limits or get_limits()
    app = App(model_id, examples, precomputed_dir, lim)
    demo = app.build()
    demo.queue(default_concurrency_limit=lim.concurrency, max_size=lim.queue_size)
    install_refusal_hooks(demo)
    demo.tsallis_app = app  # the App behind the page (main() and tests read it)
    app.disk.protect_before = time.time()  # what building copied into Gradio's cache (the gallery) stays
    demo.tsallis_janitor = Janitor(app, lim.janitor_s).start()
    return demo


def launch_kwargs(limits: Limits | None = None) -> dict[str, Any]:
    """Settings that Gradio 6 takes in ``launch()``: theme, CSS, server name/port (env respected), upload size and
    session capacity from the limits."""
    lim = limits or get_limits()
    return {
        "server_name": os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        "server_port": int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        "theme": gr.themes.Default(primary_hue="indigo"),
        "css": CSS,
        "footer_links": ["api", "gradio"],
        "show_error": True,
        "max_file_size": int(lim.max_upload_mb * 2**20),
        "state_session_capacity": lim.max_sessions,
        "app_kwargs": {"middleware": edge_middleware(lim)},
    }


def main(model_id: str | None = None) -> None:
    """``python app.py`` / ``python -m app``: start with the limits from the environment (one log line);
    ``model_id`` (from ``--model``) is the model the app opens on."""
    configure_logging()
    try:
        lim = get_limits()
    except LimitsError as e:
        raise SystemExit(f"TsallisPGD Explorer cannot start: {e}") from None
    changed = apply_hosted_environment(lim)
    own_gradio_cache()
    cleaned = clean_at_start()
    tune_malloc()
    demo = build_demo(model_id, limits=lim)
    app = demo.tsallis_app
    if gpu.zero_gpu():  # ZeroGPU wants models on CUDA at start-up, outside the GPU calls
        try:
            load_model(app.model_id, device="cuda")
        except Exception as e:  # the CPU path still works
            event("error", logging.WARNING, endpoint="startup", error=f"cuda preload: {type(e).__name__}: {e}")
    event("start", hosted=lim.hosted, models=app.models, limits=lim.summary(), hosted_env_changes=changed,
          zero_gpu=gpu.zero_gpu(), cleaned_at_start=cleaned)
    demo.launch(**launch_kwargs(lim))
