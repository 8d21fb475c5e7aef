"""What the served-app tests share: a free loopback port, Debian's Chromium, serving a demo on loopback, a page
whose requests stay on loopback, waiting for an element's text, and a demo with a shipped run of the stand-in model."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

CHROMIUM = Path("/usr/bin/chromium")
SCREENS = Path(__file__).resolve().parents[1] / "out" / "screens"
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback(url: str) -> bool:
    """True for URLs that stay on this machine (loopback hosts and the browser's own schemes)."""
    u = urlparse(url)
    if u.scheme in ("data", "blob", "about", "chrome", "chrome-extension"):
        return True
    host = (u.hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def shipped_synthetic_demo(folder: Path, side: int, config: tuple, compare: tuple[tuple[str, str], ...] = ()) -> Any:
    """The app on the stand-in model with one example, a synthetic disc of ``side`` px (with its mask), whose shipped
    run (``folder/pre``) was computed with ``make_config(*config)``; with ``compare`` ((attack, title) pairs) also a
    shipped comparison of those attacks, each with ``config``'s optimiser, ε, steps, step size and seed."""
    from app.launch import build_demo
    from app.runner import LiveRun, make_config, prepare
    from app.sources import ExampleItem
    from app.standin import register_standin, write_synthetic_example
    from app.trajectory import save_group
    from attack_engine.models import load_model

    mid = register_standin()
    ip, mp = write_synthetic_example(folder, side)
    pre = folder / "pre"
    pre.mkdir()
    model = load_model(mid)
    prep = prepare(str(ip), str(mp), model, "synthetic")
    cfg = make_config(*config)
    LiveRun(model, prep, cfg, map_side=64).run_all().save(pre / "synthetic__standin.npz")
    row = {"example": "synthetic", "model": mid, "file": "synthetic__standin.npz", "config": cfg.to_dict()}
    if compare:
        group = {title: LiveRun(model, prep, make_config(attack, *config[1:6], None), light=True, map_side=64).run_all()
                 for attack, title in compare}
        save_group(pre / "compare.npz", group, with_image=False)
        row["compare_file"] = "compare.npz"
    (pre / "index.json").write_text(json.dumps({"runs": [row]}))
    return build_demo(mid, [ExampleItem("synthetic", "Synthetic disc (with mask)", ip, {2: mp})], pre)


@contextmanager
def served_demo(demo: Any, port: int | None = None) -> Iterator[str]:
    """Launch a built Blocks on loopback (``port``, else a free one) with the app's launch settings; yield its URL,
    close after."""
    from app.launch import launch_kwargs

    port = port or free_port()
    kw = launch_kwargs()
    kw.update(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    demo.launch(**kw)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@contextmanager
def loopback_page(url: str | None, width: int = 1440, height: int = 900) -> Iterator[Any]:
    """A Chromium page (Playwright) at ``url`` (``None``: blank, the test goes where it wants) whose requests may
    only go to this machine; fails afterwards if the page tried to reach anything else."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def route(r: Any) -> None:
        if loopback(r.request.url):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        ctx = browser.new_context(viewport={"width": width, "height": height})
        ctx.route("**/*", route)
        page = ctx.new_page()
        if url is not None:
            page.goto(url)
        try:
            yield page
        finally:
            browser.close()
    assert not outside, f"requests outside loopback: {outside[:5]}"


def wait_text(page: Any, selector: str, pattern: str, timeout_s: float = 30.0, poll_s: float = 0.1) -> str:
    """The text of ``selector`` once it matches the regex ``pattern``; an AssertionError (with the last text)
    after ``timeout_s``."""
    t_end = time.time() + timeout_s
    while time.time() < t_end:
        s = page.locator(selector).inner_text()
        if re.search(pattern, s):
            return s
        time.sleep(poll_s)
    raise AssertionError(f"{selector} never matched {pattern!r}; last: {page.locator(selector).inner_text()!r}")

