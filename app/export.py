"""Exports of a recorded run: run card (the engine's run file, re-runnable), per-record CSV, PNG of the panels, animated GIF,
and the shareable link's query string."""

from __future__ import annotations

import csv
import io
import math
from typing import Any
from urllib.parse import urlencode

import numpy as np
from PIL import Image, ImageDraw

from app import figures as fg
from app.panels import panels
from app.trajectory import SCALARS, Trajectory
from app.view import render_main, render_static
from attack_engine.registry import attack_names, attack_title, takes_schedule
from attack_engine.runfile import RECORD_COLUMNS, WHOLE_COLUMNS, RunFile, to_json

QUERY_KEYS = ("example", "model", "attack", "opt", "eps", "steps", "alpha", "seed", "schedule")


# -- run card -------------------------------------------------------------------------------------------
def _f(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def run_file(traj: Trajectory) -> RunFile:
    """The recorded run as a :class:`~attack_engine.runfile.RunFile` (the CLI's format): model, exact input,
    config, compute settings, metrics and the per-record scalars."""
    info = traj.info
    n = len(traj)
    bi = traj.best_index()
    return RunFile(
        model=info.model_id, config=dict(info.config), image=traj.image, labels=traj.labels if info.has_gt else None,
        source="upload" if info.source == "upload" else f"example:{info.source}",
        mask=None if not info.has_gt else ("upload" if info.source == "upload" else "example"),
        target_class=info.extra.get("target_class"), compute=info.extra.get("compute"), device=info.extra.get("device"),
        records=n, expected_records=info.expected_records, finished=traj.finished,
        metrics={
            "clean_acc": _f(info.clean_acc), "clean_miou": _f(info.clean_miou),
            "result_acc": _f(info.extra.get("result_acc")), "result_miou": _f(info.extra.get("result_miou")),
            "best_index": bi, "last_acc": traj.get("acc", n - 1) if n else None,
            "last_miou": traj.get("miou", n - 1) if n else None,
        },
        per_record={c: [_num(c, v) for v in traj.sc[c]] for c in RECORD_COLUMNS},
    )


def _num(column: str, v: float) -> float | int | None:
    """A stored scalar as the run file writes it: whole-number columns as int, NaN as None."""
    f = _f(float(v))
    return int(f) if f is not None and column in WHOLE_COLUMNS else f


def run_card(traj: Trajectory) -> dict[str, Any]:
    """The run card: the run file of this run as JSON (:data:`attack_engine.runfile.FORMAT`), re-runnable by
    ``app.runner.rerun_card`` and ``python -m attack_engine attack --from``."""
    return to_json(run_file(traj))


# -- tables and pictures --------------------------------------------------------------------------------
def records_csv(traj: Trajectory) -> str:
    """One row per record with every scalar (ε and step size also in /255)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    cols = [*SCALARS, "eps_255", "step_size_255"]
    w.writerow(cols)
    for k in range(len(traj)):
        row = [traj.sc[c][k] for c in SCALARS]
        row += [traj.sc["eps"][k] * 255, traj.sc["step_size"][k] * 255]
        w.writerow(["" if isinstance(v, float) and not math.isfinite(v) else (round(v, 7) if isinstance(v, float) else v)
                    for v in row])
    return buf.getvalue()


def _line_chart(series: dict[str, tuple[np.ndarray, tuple[int, int, int]]], n: int, k: int, size=(420, 220),
                title: str = "") -> Image.Image:
    """A small PIL line chart (0..1 on y), used when Plotly's PNG export (kaleido) is not installed."""
    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    left, r, t, b = 36, 8, 22, 22
    d.rectangle([left, t, w - r, h - b], outline=(180, 180, 180))
    for y in (0.0, 0.5, 1.0):
        yy = h - b - y * (h - t - b)
        d.line([(left, yy), (w - r, yy)], fill=(230, 230, 230))
        d.text((4, yy - 6), f"{int(y * 100)}%", fill=(90, 90, 90))
    d.text((left, 4), title, fill=(20, 20, 20))
    sx = (w - left - r) / max(n - 1, 1)
    for i, (name, (ys, col)) in enumerate(series.items()):
        pts = [(left + j * sx, h - b - float(np.clip(v, 0, 1)) * (h - t - b)) for j, v in enumerate(ys) if math.isfinite(v)]
        if len(pts) > 1:
            d.line(pts, fill=col, width=2)
        d.text((left + 8 + i * 110, h - b + 4), name, fill=col)
    xk = left + k * sx
    d.line([(xk, t), (xk, h - b)], fill=(120, 120, 120))
    return img


def panel_tiles(traj: Trajectory, k: int, probe_yx: tuple[int, int] | None = None) -> list[tuple[str, Image.Image]]:
    """(caption, image) of every exported image panel of the table (``export``), in table order, at record ``k``,
    scaled to the view's longer side."""
    drawn = {**render_static(traj), **render_main(traj, k, probe_yx)}
    side = max(traj.hw)
    tiles = []
    for p in panels():
        im = drawn.get(p.name)
        if p.export and p.kind == "image" and im is not None:
            if max(im.size) != side:
                s = side / max(im.size)
                im = im.resize((round(im.width * s), round(im.height * s)), Image.NEAREST)
            tiles.append((p.export, im))
    return tiles


def panels_png(traj: Trajectory, k: int | None = None, probe_yx: tuple[int, int] | None = None) -> bytes:
    """The exported image panels at record ``k`` with captions, plus accuracy curves, as one PNG."""
    k = traj.clamp(k)
    side = max(traj.hw)
    tiles = [fg.label_tile(im, title) for title, im in panel_tiles(traj, k, probe_yx)]
    chart = _line_chart({"pixel acc": (traj.scalars("acc"), (44, 160, 44)), "mIoU": (traj.scalars("miou"), (148, 103, 189))},
                        max(len(traj), traj.info.expected_records), k, size=(max(side, 300), max(side * 2 // 3, 200)),
                        title="accuracy over records")
    tiles.append(fg.label_tile(chart, "metrics"))
    grid = fg.grid_image(tiles, cols=4)
    head = Image.new("RGB", (grid.width, 40), "white")
    d = ImageDraw.Draw(head)
    cfg = traj.info.config
    d.text((8, 4), f"TsallisPGD Explorer — {attack_title(cfg['attack'])} / {cfg['optimizer'].upper()}, "
                   f"eps {cfg['eps'] * 255:.3g}/255, {cfg['steps']} steps, seed {cfg['seed']}, model {traj.info.model_id}",
           fill=(0, 0, 0))
    d.text((8, 20), f"record {k}: pixel acc {100 * traj.get('acc', k):.1f}% (clean {100 * traj.info.clean_acc:.1f}%), "
                    f"mIoU {100 * traj.get('miou', k):.1f}%", fill=(60, 60, 60))
    out = Image.new("RGB", (grid.width, grid.height + 40), "white")
    out.paste(head, (0, 0))
    out.paste(grid, (0, 40))
    buf = io.BytesIO()
    out.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def evolution_gif(traj: Trajectory, max_frames: int = 48, side: int = 192, ms: int = 140) -> bytes:
    """Animated GIF over records: segmentation, flipped pixels and weight map side by side."""
    n = len(traj)
    if n == 0:
        raise ValueError("nothing recorded yet")
    ks = sorted(set(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int).tolist()))
    frames = []
    for k in ks:
        mn = render_main(traj, k)
        tiles = [mn[p.name] for p in panels("main") if p.gif and p.kind == "image" and p.name in mn]
        tiles = [t.resize((max(1, round(t.width * side / max(t.size))), max(1, round(t.height * side / max(t.size)))),
                          Image.NEAREST) for t in tiles]
        row = fg.grid_image(tiles, cols=len(tiles), pad=3)
        fr = fg.label_tile(row, f"record {k}/{n - 1}", f"pixel acc {100 * traj.get('acc', k):.1f}%  mIoU "
                                                      f"{100 * traj.get('miou', k):.1f}%")
        frames.append(fr.quantize(colors=128, method=Image.Quantize.MEDIANCUT))
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=ms, loop=0, optimize=True)
    return buf.getvalue()


# -- shareable link ---------------------------------------------------------------------------------------
def config_query(example: str | None, model: str, attack: str, optimizer: str, eps255: float, steps: int,
                 alpha255: float | None, seed: int, schedule: str | None) -> str:
    """The query string (without ``?``) that restores these controls."""
    q: dict[str, Any] = {"model": model, "attack": attack, "opt": optimizer, "eps": f"{float(eps255):g}",
                         "steps": int(steps), "seed": int(seed)}
    if example:
        q = {"example": example, **q}
    if alpha255:
        q["alpha"] = f"{float(alpha255):g}"
    if takes_schedule(attack) and schedule:
        q["schedule"] = schedule
    return urlencode(q)


def parse_query(params: dict[str, str]) -> dict[str, Any]:
    """Validated control values from URL query parameters; unknown or bad values are dropped."""
    out: dict[str, Any] = {}
    p = {k: str(v) for k, v in params.items() if k in QUERY_KEYS}
    if p.get("attack") in attack_names():
        out["attack"] = p["attack"]
    if p.get("opt") in ("pgd", "apgd"):
        out["opt"] = p["opt"]
    for key, lo, hi, typ in (("eps", 0.0, 64.0, float), ("steps", 1, 500, int), ("alpha", 0.0, 64.0, float),
                             ("seed", 0, 2**31 - 1, int)):
        if key in p:
            try:
                v = typ(float(p[key]))
            except ValueError:
                continue
            if lo <= v <= hi:
                out[key] = v
    for key in ("example", "model", "schedule"):
        if p.get(key):
            out[key] = p[key][:200]
    if "schedule" in out:
        from attack_engine.schedules import ScheduleError, parse_schedule

        try:
            out["schedule"] = parse_schedule(out["schedule"]).text()
        except ScheduleError:
            del out["schedule"]
    return out
