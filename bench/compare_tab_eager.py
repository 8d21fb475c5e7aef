"""A/B helper for the Compare tab's first-switch cost: runs :mod:`bench.bench_browser` with the tab filled
*eagerly* at example load (the way before the tab was made lazy), everything else unchanged.

    python bench/compare_tab_eager.py --port 7926 --only tab tab tab --json out.json

Alternate it with ``python bench/bench_browser.py --only tab tab tab`` (lazy, the app as it is) under the same
load; bench/LIVE_BROWSER.md gives the result.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import app  # noqa: E402,F401  (offline environment before gradio)
from app.tabs.compare import CompareTab  # noqa: E402


def _eager(self: CompareTab, sess, note: str) -> list:
    self._shown.pop(sess, None)
    return self.values(sess, None, note)


if __name__ == "__main__":
    CompareTab.loaded = _eager  # type: ignore[method-assign]
    sys.argv = [str(ROOT / "bench" / "bench_browser.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
