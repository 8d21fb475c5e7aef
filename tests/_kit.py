"""What the served-app tests share: a free loopback port, Debian's Chromium, and serving a demo on loopback."""

from __future__ import annotations

import socket
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


@contextmanager
def served_demo(demo: Any) -> Iterator[str]:
    """Launch a built Blocks on a free loopback port with the app's launch settings; yield its URL, close after."""
    from app.launch import launch_kwargs

    port = free_port()
    kw = launch_kwargs()
    kw.update(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    demo.launch(**kw)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@contextmanager
def loopback_page(url: str, width: int = 1440, height: int = 900) -> Iterator[Any]:
    """A Chromium page (Playwright) at ``url`` whose requests may only go to this machine; fails afterwards if the
    page tried to reach anything else."""
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
        page.goto(url)
        try:
            yield page
        finally:
            browser.close()
    assert not outside, f"requests outside loopback: {outside[:5]}"
