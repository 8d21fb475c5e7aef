"""Tables, attack ranks, the worst case over attacks, CSV/Markdown/plot output.

Everything here works on *metrics* dicts (the ``metrics.json`` an evaluation writes), so runs of several
models can be combined into one rank table (``python -m attack_engine eval report DIR ... --out OUT``).

Definitions:

* **ACC / mIoU / mAcc** of a setting (method, ε, seed): from ONE confusion matrix accumulated over all
  images (dataset-level pixel accuracy; mIoU over classes with a nonzero union).  Tables show the mean
  (± standard deviation) over seeds.
* **Attack rank**: a *setting* is one model × ε.  In each setting the methods are ranked by their
  seed-mean ACC (and separately mIoU); rank 1 = strongest attack = lowest value.  Tied values (equal
  to 1e-12) share the average of the ranks they span (1, 2.5, 2.5, 4).  The table shows each method's
  mean rank over the settings.
* **Worst case over methods** (SEA-style, per seed): for every image the method with the lowest
  per-image pixel accuracy is taken.  "worst ACC" = mean over images of that per-image minimum accuracy
  (as ``worse_only.py``); "ACC/mIoU of worst" = dataset-level metrics of the confusion matrix summed over
  each image's worst prediction (ties: first method in the table's order).  SEA's greedy mIoU search is
  not done.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FORMAT = "tsallispgd-eval-metrics/1"


def eps_label(eps: float) -> str:
    """0.0019607... -> '0.5/255'."""
    v = eps * 255
    return f"{round(v, 6):g}/255"


def average_ranks(values: Sequence[float], tol: float = 1e-12) -> list[float]:
    """Ranks of ``values`` ascending (1 = smallest); ties (within ``tol``) get their average rank; NaN last."""
    idx = sorted(range(len(values)), key=lambda i: (math.isnan(values[i]), values[i]))
    ranks = [0.0] * len(values)
    i = 0
    while i < len(idx):
        j = i
        while (j + 1 < len(idx) and not math.isnan(values[idx[i]])
               and abs(values[idx[j + 1]] - values[idx[i]]) <= tol):
            j += 1
        r = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[idx[k]] = r
        i = j + 1
    return ranks


def run_label(m: dict) -> str:
    """Short name of one evaluation: model, dataset, image count and label source."""
    labels = "ground truth" if m["config"]["labels"] == "gt" else "labels = clean prediction"
    n = m["images"]
    return f"{m['model']} on {m['dataset']['kind']} ({n} image{'s' if n != 1 else ''}, {labels})"


def _mean_std(vals: list[float]) -> tuple[float, float]:
    a = np.asarray([v for v in vals if not math.isnan(v)], dtype=np.float64)
    if not a.size:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def summarize(m: dict) -> list[dict]:
    """Seed-mean/std rows per (method, ε) of one metrics dict."""
    rows = []
    for meth in m["methods"]:
        for e in m["eps"]:
            sel = [s for s in m["settings"] if s["method"] == meth["name"] and s["eps"] == e]
            row = {"model": m["model"], "method": meth["name"], "title": meth["title"], "eps": e, "seeds": len(sel)}
            for k in ("acc", "miou", "macc"):
                row[f"{k}_mean"], row[f"{k}_std"] = _mean_std([s[k] for s in sel])
            rows.append(row)
    return rows


def rank_table(metrics: Sequence[dict]) -> tuple[list[dict], int]:
    """Average rank per method over all (model, ε) settings of ``metrics``; also the mean ACC/mIoU."""
    per_method: dict[str, dict] = {}
    n_settings = 0
    for m in metrics:
        summ = summarize(m)
        for e in m["eps"]:
            rows = [r for r in summ if r["eps"] == e]
            if not rows:
                continue
            n_settings += 1
            ra = average_ranks([r["acc_mean"] for r in rows])
            rm = average_ranks([r["miou_mean"] for r in rows])
            for r, a, b in zip(rows, ra, rm):
                p = per_method.setdefault(r["method"], {"method": r["method"], "title": r["title"], "ranks_acc": [],
                                                        "ranks_miou": [], "acc": [], "miou": []})
                p["ranks_acc"].append(a)
                p["ranks_miou"].append(b)
                p["acc"].append(r["acc_mean"])
                p["miou"].append(r["miou_mean"])
    out = []
    for p in per_method.values():
        out.append({
            "method": p["method"], "title": p["title"], "settings": len(p["ranks_acc"]),
            "rank_acc": float(np.mean(p["ranks_acc"])), "rank_miou": float(np.mean(p["ranks_miou"])),
            "best_acc": sum(r == 1.0 for r in p["ranks_acc"]), "best_miou": sum(r == 1.0 for r in p["ranks_miou"]),
            "mean_acc": float(np.nanmean(p["acc"])), "mean_miou": float(np.nanmean(p["miou"])),
        })
    out.sort(key=lambda r: (r["rank_acc"] + r["rank_miou"], r["rank_acc"]))
    return out, n_settings


def _pct(v: float, std: float | None = None) -> str:
    if v is None or math.isnan(v):
        return "–"
    s = f"{100 * v:.2f}"
    if std is not None and not math.isnan(std) and std > 0:
        s += f" ± {100 * std:.2f}"
    return s


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def markdown(metrics: Sequence[dict], title: str | None = None) -> str:
    """The Markdown report for one or several metrics dicts (one section per model, ranks over all)."""
    lines: list[str] = []
    if title:
        lines += [f"# {title}", ""]
    for m in metrics:
        cfg = m["config"]
        lines += [f"## {run_label(m)}", ""]
        lines.append(
            f"{cfg['optimizer'].upper()}, {cfg['steps']} steps, seeds {', '.join(map(str, m['seeds']))}, "
            f"crop {m['size'][0]}×{m['size'][1]}, "
            + (f"mixed precision {cfg['amp']}, " if cfg.get("amp", "off") != "off" else "")
            + f"{m['world']} process(es) on {m.get('device_name', m['device'])}, {m['seconds']:.0f} s"
            + (f" ({'; '.join(m['dataset']['notes'])})" if m["dataset"].get("notes") else "") + ".")
        lines.append("")
        c = m["clean"]
        lines += _table(["clean", "ACC %", "mIoU %", "mAcc %"], [["—", _pct(c["acc"]), _pct(c["miou"]), _pct(c["macc"])]])
        lines.append("")
        summ = summarize(m)
        eps_cols = [eps_label(e) for e in m["eps"]]
        for key, name in (("acc", "ACC %"), ("miou", "mIoU %")):
            rows = []
            for meth in m["methods"]:
                r = [x for x in summ if x["method"] == meth["name"]]
                vals = [x[f"{key}_mean"] for x in r]
                rows.append([meth["title"], *(_pct(x[f"{key}_mean"], x[f"{key}_std"]) for x in r),
                             _pct(float(np.nanmean(vals)) if vals else math.nan)])
            lines += [f"Adversarial {name} (ε = L∞ radius; mean over ε in the last column):", ""]
            lines += _table(["attack", *(f"ε={x}" for x in eps_cols), "mean"], rows)
            lines.append("")
        if m.get("worst") and len(m["methods"]) > 1:
            rows = []
            for e in m["eps"]:
                w = [x for x in m["worst"] if x["eps"] == e]
                a_mean, a_std = _mean_std([x["acc_mean_min"] for x in w])
                b_mean, b_std = _mean_std([x["acc"] for x in w])
                c_mean, c_std = _mean_std([x["miou"] for x in w])
                rows.append([f"ε={eps_label(e)}", _pct(a_mean, a_std), _pct(b_mean, b_std), _pct(c_mean, c_std)])
            lines += [f"Worst case over the {len(m['methods'])} attacks, per image:", ""]
            lines += _table(["", "worst ACC % (mean of per-image min)", "ACC % of worst", "mIoU % of worst"], rows)
            lines.append("")
    ranks, n = rank_table(metrics)
    if len(ranks) > 1:
        lines += [f"Average attack rank over {n} setting(s) (model × ε, seed-mean; 1 = strongest = lowest; "
                  "ties share the average rank):", ""]
        rows = [[r["title"], f"{r['rank_acc']:.2f}", f"{r['rank_miou']:.2f}", f"{r['best_acc']}/{r['settings']}",
                 f"{r['best_miou']}/{r['settings']}", _pct(r["mean_acc"]), _pct(r["mean_miou"])] for r in ranks]
        lines += _table(["attack", "rank ACC", "rank mIoU", "#rank 1 ACC", "#rank 1 mIoU", "mean ACC %", "mean mIoU %"], rows)
        lines.append("")
    return "\n".join(lines)


def write_csvs(metrics: Sequence[dict], out: Path, per_image: list[dict] | None = None) -> list[Path]:
    """results.csv (every setting), summary.csv (seed mean/std), worst_case.csv, ranks.csv, per_image.csv."""
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def dump(name: str, rows: list[dict]) -> None:
        if not rows:
            return
        p = out / name
        with p.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        written.append(p)

    res = []
    for m in metrics:
        res.append({"model": m["model"], "method": "clean", "attack": "", "schedule": "", "eps": 0.0, "eps_255": 0.0,
                    "seed": "", **{k: m["clean"][k] for k in ("acc", "miou", "macc")}, "images": m["images"]})
        titles = {x["name"]: x for x in m["methods"]}
        for s in m["settings"]:
            t = titles[s["method"]]
            res.append({"model": m["model"], "method": s["method"], "attack": t["attack"], "schedule": t["schedule"] or "",
                        "eps": s["eps"], "eps_255": round(s["eps"] * 255, 6), "seed": s["seed"],
                        "acc": s["acc"], "miou": s["miou"], "macc": s["macc"], "images": m["images"]})
    dump("results.csv", res)
    dump("summary.csv", [{k: v for k, v in r.items() if k != "title"} | {"eps_255": round(r["eps"] * 255, 6)}
                         for m in metrics for r in summarize(m)])
    dump("worst_case.csv", [{"model": m["model"], "eps": w["eps"], "eps_255": round(w["eps"] * 255, 6), "seed": w["seed"],
                             "worst_acc_mean_of_min": w["acc_mean_min"], "acc_of_worst": w["acc"],
                             "miou_of_worst": w["miou"], "images": w["images"]} for m in metrics for w in m.get("worst", [])])
    ranks, _ = rank_table(metrics)
    dump("ranks.csv", [{k: v for k, v in r.items() if k != "title"} for r in ranks])
    if per_image:
        dump("per_image.csv", per_image)
    return written


def plot(metrics: Sequence[dict], path: Path) -> Path | None:
    """ACC and mIoU vs ε per method (ε = 0 is the clean value), one row per model; PNG via matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(len(metrics), 2, figsize=(10, 3.6 * len(metrics)), squeeze=False)
    for row, m in zip(axes, metrics):
        summ = summarize(m)
        for ax, key, name in ((row[0], "acc", "ACC %"), (row[1], "miou", "mIoU %")):
            for meth in m["methods"]:
                r = [x for x in summ if x["method"] == meth["name"]]
                xs = [0.0] + [x["eps"] * 255 for x in r]
                ys = [100 * m["clean"][key]] + [100 * x[f"{key}_mean"] for x in r]
                err = [0.0] + [100 * (x[f"{key}_std"] if not math.isnan(x[f"{key}_std"]) else 0) for x in r]
                ax.errorbar(xs, ys, yerr=err, marker="o", ms=3.5, capsize=2, label=meth["title"])
            ax.set_xlabel("ε (×1/255)")
            ax.set_ylabel(name)
            ax.set_title(f"{run_label(m)}: {name}", fontsize=8)
            ax.grid(alpha=0.3)
        row[1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(metrics: Sequence[dict], out: Path, title: str, per_image: list[dict] | None = None) -> list[Path]:
    """Every output of a report into ``out``: CSVs, report.md and plot.png."""
    files = write_csvs(metrics, out, per_image)
    md = out / "report.md"
    md.write_text(markdown(metrics, title) + "\n")
    files.append(md)
    p = plot(metrics, out / "plot.png")
    if p is not None:
        files.append(p)
    return files
