"""Render one record of a :class:`~app.trajectory.Trajectory` into the values of every panel.

``render_main(traj, k, probe)`` -> dict panel name -> PIL image / Plotly figure / Markdown text.
``render_static(traj)`` -> the panels that do not change during a run (clean image, clean and true
segmentations, legend).  Both are pure functions of their arguments.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from app import figures as fg
from app.panels import (  # noqa: F401  (the geometry is also read from here)
    DISPLAY_SIDE,
    MIN_PANEL_SIDE,
    PERTURBATION_SIDE,
    Panel,
    View,
    draw,
    fit,
    get_panel,
    main_names,
    panel_hw,
    panel_to_view,
    panels,
    static_names,
    view_to_panel,
)
from app.texts import _pct, legend_markdown, probe_markdown, status_markdown  # noqa: F401
from app.trajectory import Trajectory


def __getattr__(name: str):
    """``MAIN_PANELS`` / ``STATIC_PANELS``: the panel table's names now (panels registered later included)."""
    if name == "MAIN_PANELS":
        return main_names()
    if name == "STATIC_PANELS":
        return static_names()
    raise AttributeError(name)


def render_static(traj: Trajectory) -> dict[str, Any]:
    """Every per-run panel of the table (clean image, clean segmentation, ground truth or a placeholder, legend)."""
    v = View(traj, traj.clamp(None))
    return {p.name: draw(p, v) for p in panels("static")}


def render_main(traj: Trajectory, k: int | None = None, probe_yx: tuple[int, int] | None = None,
                live: bool = False, note: str = "", charts: bool = True, hist: bool = True) -> dict[str, Any]:
    """Every per-record panel of the table at record ``k`` (default: the last one); ``probe_yx`` is a view pixel.
    ``charts=False`` leaves out the whole-run charts (metrics, gradient mass), ``hist=False`` the confidence
    histogram: Plotly redraws are what costs the browser most per view.  A panel whose renderer has nothing to
    show (no telemetry, no probe) is left out."""
    v = View(traj, traj.clamp(k), probe_yx, live, note)
    skip = {c for c, on in (("charts", charts), ("hist", hist)) if not on}
    out = {}
    for p in panels("main"):
        if p.cost in skip:
            continue
        val = draw(p, v)
        if val is not None:
            out[p.name] = val
    return out


def render_status(traj: Trajectory, k: int | None = None, live: bool = False, note: str = "") -> str:
    """The status line alone at record ``k`` (what :func:`render_main` gives as ``"status"``, without drawing the
    other panels)."""
    return draw(get_panel("status"), View(traj, traj.clamp(k), None, live, note))


TILE_SIDE = 138  # compare tiles: each map's longer side, so three tiles a row are 870 px wide, shown about 1:1 in
TILE_TITLE_PX = 15  # the tab at 1440 px: the titles are readable whatever the runs' map size


def _tile_map(img: Image.Image) -> Image.Image:
    s = TILE_SIDE / max(img.size)
    return img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.BILINEAR)


def compare_tiles(trajs: dict[str, Trajectory], k: int, pending: tuple[str, ...] = ()) -> Image.Image:
    """Small multiples: per attack, the segmentation and flipped pixels at record ``k`` (clamped per run), each
    map :data:`TILE_SIDE` px; a run without records yet and each of ``pending`` (titles of attacks not started yet)
    get a grey tile, so the grid keeps its layout while a comparison runs."""
    tiles, waiting = [], []
    for name, t in trajs.items():
        if not len(t):
            waiting.append((len(tiles), name))
            continue
        kk = t.clamp(k)
        info = t.info
        seg = fg.seg_overlay(t.image_v, t.pred[kk], info.palette, ignore_index=info.ignore_index)
        fl = fg.flipped_image(fg.background(t), t.pred[kk], t.clean_pred_v, t.labels_v, t.valid_v)
        pair = fg.grid_image([_tile_map(seg), _tile_map(fl)], cols=2, pad=2)
        sub = f"record {kk}: acc {_pct(t.get('acc', kk))}, mIoU {_pct(t.get('miou', kk))}"
        tiles.append(fg.label_tile(pair, name, sub, size=TILE_TITLE_PX))
    hw = (tiles[0].height - 2 * TILE_TITLE_PX - 10, tiles[0].width) if tiles else (TILE_SIDE, 2 * TILE_SIDE + 6)
    for i, name in reversed(waiting):  # started, no record yet: in its place
        tiles.insert(i, fg.label_tile(fg.placeholder_image("computing", hw), name, "first record coming",
                                      size=TILE_TITLE_PX))
    tiles += [fg.label_tile(fg.placeholder_image("waiting", hw), name, "not started yet", size=TILE_TITLE_PX)
              for name in pending]
    if not tiles:
        return fg.placeholder_image("nothing recorded yet")
    return fg.grid_image(tiles, cols=min(3, len(tiles)) if len(tiles) != 4 else 2)


def leaderboard_rows(trajs: dict[str, Trajectory]) -> list[list]:
    """Rows: attack, final ACC, final mIoU, best ACC, best record, clean ACC (sorted by best ACC, lowest first)."""
    rows = []
    for name, t in trajs.items():
        if not len(t):
            continue
        bi = t.best_index()
        res_acc = t.info.extra.get("result_acc", t.get("best_acc", len(t) - 1) if bi >= 0 else math.nan)
        res_miou = t.info.extra.get("result_miou", t.get("miou", bi) if bi >= 0 else math.nan)
        rows.append([name, round(100 * res_acc, 2), round(100 * res_miou, 2), bi,
                     round(100 * t.get("acc", len(t) - 1), 2), round(100 * t.info.clean_acc, 2),
                     "✓" if t.finished else f"{len(t)}/{t.info.expected_records}"])
    rows.sort(key=lambda r: (math.inf if not np.isfinite(r[1]) else r[1]))
    return rows


LEADERBOARD_HEADERS = ["attack", "ACC %", "mIoU %", "best rec.", "last ACC %", "clean ACC %", "done"]
