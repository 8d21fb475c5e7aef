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
from app.colour_bars import BAR_PANELS, with_bar
from app.trajectory import Trajectory
from attack_engine.registry import attack_title, param_symbol

DISPLAY_SIDE = 384  # panels are sent at most this size per side (they are ~300 CSS px on screen)
PERTURBATION_SIDE = 256  # noise-like panels (perturbation, |dL/dz|) are shown at most this size (noise does not compress)

MAIN_PANELS = ("status", "adv", "pert", "seg", "flipped", "firstflip", "weight", "grad", "hist", "curves", "mass",
               "probe_plot", "probe_md")
STATIC_PANELS = ("clean", "clean_seg", "gt", "legend")


def _pct(v: float) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{100 * v:.1f}%"


def status_markdown(traj: Trajectory, k: int, live: bool = False, note: str = "") -> str:
    """One line: where we are in the run and the current metrics."""
    info = traj.info
    cfg = info.config
    n = len(traj)
    if n == 0:
        return "No record yet."
    g = lambda name: traj.get(name, k)  # noqa: E731
    stage = f" · stage {int(g('stage')) + 1}" if cfg.get("optimizer") == "apgd" else ""
    par = g("param")
    pname = param_symbol(cfg.get("attack", ""))
    ptxt = f" · {pname} = {par:.2f}" if math.isfinite(par) else ""
    bi = traj.best_index()
    best = f" · best iterate: record {bi} ({_pct(traj.get('acc', bi))})" if bi >= 0 else ""
    state = "▶ running" if live else ("✓ finished" if traj.finished else "⏸ paused")
    title = attack_title(cfg.get("attack", ""))
    dev = info.extra.get("device")
    state += f" on {_device_label(dev)}" if dev else ""
    eps = g("eps") if math.isfinite(g("eps")) else cfg.get("eps", 0)
    eps_txt = f"ε = {255 * eps:.3g}/255"
    if cfg.get("optimizer") == "apgd" and abs(eps - cfg.get("eps", eps)) > 1e-6:
        eps_txt += f" in this stage (the final stage uses {255 * cfg.get('eps', 0):.3g}/255)"
    return (f"**{title}** ({cfg.get('optimizer', '').upper()}, {eps_txt}) — {state} · "
            f"record **{k}** of {n} recorded / {info.expected_records} · iteration {int(g('iteration'))}{stage}{ptxt}  \n"
            f"pixel acc **{_pct(g('acc'))}** (clean {_pct(info.clean_acc)}) · mIoU **{_pct(g('miou'))}** "
            f"(clean {_pct(info.clean_miou)}) · flipped {_pct(g('flipped'))}{best}"
            + (f"  \n{note}" if note else ""))


def _device_label(dev: str) -> str:
    """``cuda:0`` -> ``GPU (cuda:0)``, ``cpu`` -> ``CPU``."""
    d = str(dev)
    return f"GPU ({d})" if d.startswith("cuda") else d.upper() if d in ("cpu", "mps") else d


def legend_markdown(traj: Trajectory) -> str:
    info = traj.info
    items = []
    for name, col in list(zip(info.class_names, info.palette, strict=False))[:24]:
        items.append(f"<span style='display:inline-block;width:.8em;height:.8em;background:rgb({col[0]},{col[1]},{col[2]});"
                     f"border:1px solid #888;margin-right:.25em'></span>{name}")
    more = " …" if len(info.class_names) > 24 else ""
    src = f"example `{info.source}`" if info.source != "upload" else "your upload"
    gt = "ground truth" if info.has_gt else "the clean prediction (no ground truth given)"
    h, w = info.model_hw
    return (f"Classes: {' &nbsp; '.join(items)}{more}  \nImage: {src}, attacked at {w}×{h} (model input); "
            f"labels = {gt}.")


def probe_markdown(traj: Trajectory, probe: dict, k: int) -> str:
    names = traj.info.class_names
    nm = lambda c: names[c] if 0 <= c < len(names) else ("ignored" if c == traj.info.ignore_index else str(c))  # noqa: E731
    k = min(k, len(probe["pred"]) - 1)
    ff = probe["first_flip"]
    flip = (f"first flipped at record **{ff}** → {nm(int(probe['pred'][ff]))}" if ff >= 0 else "never flipped so far")
    extra = ""
    if "p_true" in probe:
        extra = (f" · p_y = {probe['p_true'][k]:.3f} · weight {probe['weight'][k]:.3g} · "
                 f"|∂L/∂z| {probe['grad'][k]:.3g}")
    return (f"Pixel (x={probe['x']}, y={probe['y']}): label **{nm(probe['label'])}**, clean prediction "
            f"**{nm(probe['clean'])}**, now **{nm(int(probe['pred'][k]))}**{extra} · {flip}")


CAPPED = {"pert"}  # the noise-like perturbation (not clickable), shown at most PERTURBATION_SIDE per side
MIN_PANEL_SIDE = 384  # clickable panels are sent at least this large (they are at most ~350 CSS px on screen)
SMOOTH = {"clean", "adv", "clean_seg", "seg", "gt"}  # photo-like panels, resized bilinearly


def panel_hw(traj: Trajectory, name: str) -> tuple[int, int]:
    """(H, W) of panel ``name``'s map as sent to the browser (a colour-bar panel adds its strip below): the display
    size capped at :data:`DISPLAY_SIDE`
    (:data:`PERTURBATION_SIDE` for the perturbation), and small runs (the 128-px shipped ones) enlarged to :data:`MIN_PANEL_SIDE`.

    The browser must never show a clickable panel larger than it was sent: Gradio maps a click to image pixels
    assuming the image is not enlarged (its scale is capped at 1), so an enlarged panel probes the wrong pixel.
    """
    h, w = traj.display_hw
    cap = PERTURBATION_SIDE if name in CAPPED else DISPLAY_SIDE
    if max(h, w) > cap:
        s = cap / max(h, w)
        return max(1, round(h * s)), max(1, round(w * s))
    if name not in CAPPED and max(h, w) < MIN_PANEL_SIDE:
        s = MIN_PANEL_SIDE / max(h, w)
        return max(1, round(h * s)), max(1, round(w * s))
    return h, w


def _fit(img: Image.Image, traj: Trajectory, name: str) -> Image.Image:
    h, w = panel_hw(traj, name)
    if img.size == (w, h):
        return img
    return img.resize((w, h), Image.BILINEAR if name in SMOOTH else Image.NEAREST)


def view_to_panel(traj: Trajectory, name: str, yx: tuple[int, int]) -> tuple[int, int]:
    """View-map pixel (y, x) -> pixel centre (x, y) on panel ``name``."""
    h, w = panel_hw(traj, name)
    hv, wv = traj.hw
    return int((yx[1] + 0.5) * w / wv), int((yx[0] + 0.5) * h / hv)


def panel_to_view(traj: Trajectory, name: str, xy: tuple[float, float]) -> tuple[int, int] | None:
    """A click at (x, y) on panel ``name`` -> view-map pixel (y, x); None for a click on the panel's colour bar
    (drawn below the map, :mod:`app.colour_bars`)."""
    h, w = panel_hw(traj, name)
    if name in BAR_PANELS and xy[1] >= h:
        return None
    hv, wv = traj.hw
    y = min(max(int(xy[1] * hv / h), 0), hv - 1)
    x = min(max(int(xy[0] * wv / w), 0), wv - 1)
    return y, x


def render_static(traj: Trajectory) -> dict[str, Any]:
    """Clean image, clean segmentation, ground truth (or a placeholder) and the class legend."""
    info = traj.info
    out: dict[str, Any] = {
        "clean": fg.to_pil(traj.image_v),
        "clean_seg": fg.seg_overlay(traj.image_v, traj.clean_pred_v, info.palette, ignore_index=info.ignore_index),
    }
    if info.has_gt:
        out["gt"] = fg.seg_overlay(traj.image_v, traj.labels_v, info.palette, ignore_index=info.ignore_index)
    else:
        out["gt"] = fg.placeholder_image("No ground-truth mask: the attack uses the clean prediction as labels.",
                                         traj.hw)
    out = {k: _fit(v, traj, k) for k, v in out.items()}
    out["legend"] = legend_markdown(traj)
    return out


def render_main(traj: Trajectory, k: int | None = None, probe_yx: tuple[int, int] | None = None,
                live: bool = False, note: str = "", charts: bool = True, hist: bool = True) -> dict[str, Any]:
    """Every per-record panel at record ``k`` (default: the last one); ``probe_yx`` is a view pixel.
    ``charts=False`` leaves out the whole-run charts (metrics, gradient mass), ``hist=False`` the confidence
    histogram: Plotly redraws are what costs the browser most per view."""
    k = traj.clamp(k)
    info = traj.info
    cfg = info.config
    pred = traj.pred[k]
    imgs: dict[str, Image.Image] = {}
    if traj.delta:
        dk = traj.delta_key(k)
        imgs["adv"] = fg.adversarial_image(traj.image_v, traj.delta[dk], info.dmax)
        imgs["pert"] = fg.perturbation_image(traj.delta[dk])
        if dk != k:
            note = (note + "  \n" if note else "") + (f"_This shipped run keeps the perturbation of every few records: "
                                                     f"the adversarial image and δ shown are from record {dk}._")
    imgs["seg"] = fg.seg_overlay(traj.image_v, pred, info.palette, ignore_index=info.ignore_index)
    imgs["flipped"] = fg.flipped_image(fg.background(traj), pred, traj.clean_pred_v, traj.labels_v, traj.valid_v)
    imgs["firstflip"] = fg.first_flip_image(fg.background(traj), traj.first_flip_at(k),
                                            max(info.expected_records, len(traj)))
    if traj.has_telemetry:
        imgs["weight"] = fg.weight_image(traj.weight[k])
        imgs["grad"] = fg.grad_image(traj.grad[k])
    out: dict[str, Any] = {"status": status_markdown(traj, k, live, note)}
    for name, im in imgs.items():
        im = _fit(im, traj, name)
        if probe_yx is not None and name in ("seg", "flipped", "weight", "grad", "adv"):
            im = fg.with_marker(im, view_to_panel(traj, name, probe_yx))
        if name in BAR_PANELS:
            im = with_bar(im, name, max(info.expected_records, len(traj)))
        out[name] = im
    attack = cfg.get("attack", "ce")
    par = traj.get("param", k)
    if traj.has_telemetry and hist:
        out["hist"] = fg.histogram_figure(traj.hist[k], attack, int(traj.get("stage_step", k)),
                                          int(traj.get("stage_total", k)), cfg.get("schedule"),
                                          None if not math.isfinite(par) else par, k)
    if charts:
        out["curves"] = fg.curves_figure(traj, k)
        out["mass"] = fg.mass_figure(traj, k)
    if probe_yx is not None:
        y, x = probe_yx
        pr = traj.probe(min(y, traj.hw[0] - 1), min(x, traj.hw[1] - 1))
        out["probe_plot"] = fg.probe_figure(pr, info.class_names, info.palette, k)
        out["probe_md"] = probe_markdown(traj, pr, k)
    return out


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
