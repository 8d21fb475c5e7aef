"""What the served-app tests share: a free loopback port, Debian's Chromium, serving a demo on loopback, a page
whose requests stay on loopback, and waiting for an element's text."""

from __future__ import annotations

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

