"""The explorer's text panels: the status line, the class legend and the pixel probe's summary (pure)."""

from __future__ import annotations

import math

from app.trajectory import Trajectory
from attack_engine.registry import attack_title, param_symbol


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
