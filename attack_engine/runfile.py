"""One run-file format for the CLI (``attack --out``) and the app (run card): everything to re-run and check a run.

A run file (JSON, :data:`FORMAT`) holds the model id, the attack's exact clean input (the image at model resolution
as a PNG, the labels too when they were given), the config with its resolved ignore index, the target class, the
compute settings the records depend on (:mod:`attack_engine.determinism`), versions, the final metrics and the
per-record scalars (:data:`RECORD_COLUMNS`).  ``python -m attack_engine attack --from FILE`` and
``app.runner.rerun_card(FILE)`` re-run any run file, whichever wrote it.

:func:`read_run` also reads the two older formats: the CLI's ``tsallispgd-run/1`` (which named the image file
instead of storing it: :attr:`RunFile.image` is then ``None`` and only the CLI, which can re-open and resize that
file as it did, re-runs it) and the app's ``tsallispgd-explorer/run-card@1``.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FORMAT = "tsallispgd-run/2"
CLI_V1 = "tsallispgd-run/1"
APP_CARD_V1 = "tsallispgd-explorer/run-card@1"
# per-record scalars, in StepRecord terms (mass_*: the gradient-mass shares; None = telemetry off)
RECORD_COLUMNS = ("index", "iteration", "stage", "stage_step", "stage_total", "eps", "step_size", "param", "loss",
                  "ce", "acc", "miou", "best_acc", "best_index", "mass_cc", "mass_uc", "mass_wrong")
WHOLE_COLUMNS = frozenset({"index", "iteration", "stage", "stage_step", "stage_total", "best_index"})
METRICS = ("clean_acc", "clean_miou", "result_acc", "result_miou", "best_index")


class RunFileError(ValueError):
    """The file is not a run file (or a damaged one); the message is one line."""


@dataclass
class RunFile:
    """A run as stored: enough to re-run it (model, input, config, compute settings) and to check the re-run."""

    model: str
    config: dict
    image: np.ndarray | None  # H×W×3 uint8 at model resolution: the attack's clean input (None: a CLI v1 file)
    labels: np.ndarray | None = None  # H×W int64 at model resolution; None = the clean prediction
    source: str = "upload"  # "example:<id>", "upload" or the image file the CLI read
    mask: str | None = None  # where the labels came from (a file, "example"), None without labels
    target_class: int | None = None
    compute: dict | None = None  # attack_engine.determinism.fingerprint() of the run
    device: str | None = None
    records: int = 0
    expected_records: int | None = None
    finished: bool = True
    metrics: dict = field(default_factory=dict)  # METRICS (+ last_acc, last_miou)
    per_record: dict[str, list] = field(default_factory=dict)  # RECORD_COLUMNS -> one value per record
    seconds: float | None = None
    created: str | None = None
    format: str = FORMAT
    size: tuple[int, int] | None = None  # model resolution (H, W)

    @property
    def example(self) -> str | None:
        """The example id when the input was a shipped example, else None."""
        return self.source.split(":", 1)[1] if self.source.startswith("example:") else None

    @property
    def threads(self) -> int | None:
        """The intra-op thread count the run computed with (None when not recorded)."""
        t = (self.compute or {}).get("torch_threads")
        return int(t) if isinstance(t, int) and t >= 1 else None


# -- values ---------------------------------------------------------------------------------------------
def _num(v: Any) -> float | int | None:
    """A JSON number: finite floats as they are, NaN/inf/None -> None."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def record_row(rec: Any, item: int = 0) -> dict[str, float | int | None]:
    """The :data:`RECORD_COLUMNS` of one :class:`~attack_engine.attack.StepRecord` (batch item ``item``)."""
    mass = [None] * 3 if rec.mass is None else [float(v) for v in rec.mass[item]]
    row: dict[str, float | int | None] = {
        "index": rec.index, "iteration": rec.iteration, "stage": rec.stage, "stage_step": rec.stage_step,
        "stage_total": rec.stage_total, "eps": float(rec.eps[item]), "step_size": float(rec.step_size[item]),
        "param": None if rec.param is None else float(rec.param), "loss": float(rec.loss[item]),
        "ce": float(rec.ce[item]), "acc": float(rec.acc[item]), "miou": float(rec.miou[item]),
        "best_acc": float(rec.best_acc[item]), "best_index": int(rec.best_index[item]),
        "mass_cc": mass[0], "mass_uc": mass[1], "mass_wrong": mass[2],
    }
    return {k: (v if k in WHOLE_COLUMNS else _num(v)) for k, v in row.items()}


def columns(rows: list[dict]) -> dict[str, list]:
    """Rows of :func:`record_row` -> one list per column."""
    return {c: [r.get(c) for r in rows] for c in RECORD_COLUMNS}


def png_b64(arr: np.ndarray) -> str:
    """An image or label map as base64 PNG (labels above 255 as 16-bit)."""
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        a = a.astype(np.uint8) if a.min(initial=0) >= 0 and a.max(initial=0) < 256 else a.astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


def from_png_b64(text: str) -> np.ndarray:
    """The array a run file stores as base64 PNG."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


# -- writing --------------------------------------------------------------------------------------------
def to_json(rf: RunFile) -> dict[str, Any]:
    """The run file's JSON object (:data:`FORMAT`)."""
    if rf.image is None:
        raise RunFileError("a run file must store its input image")
    n = len(rf.per_record.get("acc", []))
    return {
        "format": FORMAT,
        "created": rf.created or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": rf.model,
        "input": {"source": rf.source, "mask": rf.mask, "size": list(rf.image.shape[:2]),
                  "image_png": png_b64(rf.image), "labels_png": None if rf.labels is None else png_b64(rf.labels)},
        "target_class": rf.target_class,
        "config": dict(rf.config),
        "compute": rf.compute, "device": rf.device,
        "records": rf.records or n, "expected_records": rf.expected_records, "finished": bool(rf.finished),
        "metrics": {k: _num(v) if k != "best_index" else v for k, v in rf.metrics.items()},
        "per_record": {c: list(rf.per_record.get(c, [None] * n)) for c in RECORD_COLUMNS},
        "seconds": rf.seconds,
        "how_to_rerun": "python -m attack_engine attack --from FILE, or app.runner.rerun_card(FILE)",
    }


def write_run(rf: RunFile, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_json(rf), indent=1))


# -- reading --------------------------------------------------------------------------------------------
def read_run(src: dict | str | Path) -> RunFile:
    """A run file of any known format (a path or its parsed JSON); :class:`RunFileError` otherwise."""
    if not isinstance(src, dict):
        try:
            src = json.loads(Path(src).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RunFileError(f"cannot read run file {Path(src).name!r}: {e.__class__.__name__}") from None
    if not isinstance(src, dict):
        raise RunFileError("not a run file (not a JSON object)")
    fmt = src.get("format")
    reader = {FORMAT: _read_v2, CLI_V1: _read_cli_v1, APP_CARD_V1: _read_app_v1}.get(fmt)
    if reader is None:
        raise RunFileError(f"not a run card (format {str(fmt)[:60]!r}; expected {FORMAT!r})")
    try:
        return reader(src)
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise RunFileError(f"damaged run file ({fmt}): {e.__class__.__name__} {str(e)[:80]}") from None


def _model_id(d: dict) -> str:
    m = d["model"]
    if not isinstance(m, str):
        raise TypeError("model must be a model id")
    return m


def _arrays(image_png: str | None, labels_png: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    image = None if not image_png else from_png_b64(image_png).astype(np.uint8)
    labels = None if not labels_png else from_png_b64(labels_png).astype(np.int64)
    if image is not None and (image.ndim != 3 or image.shape[2] != 3):
        raise ValueError(f"the stored image must be RGB, got shape {image.shape}")
    if labels is not None and (image is None or labels.shape != image.shape[:2]):
        raise ValueError("the stored labels must have the image's size")
    return image, labels


def _read_v2(d: dict) -> RunFile:
    inp = d.get("input") or {}
    image, labels = _arrays(inp.get("image_png"), inp.get("labels_png"))
    per = d.get("per_record") or {}
    return RunFile(
        model=_model_id(d), config=dict(d.get("config") or {}), image=image, labels=labels,
        source=str(inp.get("source") or "upload"), mask=inp.get("mask"), target_class=d.get("target_class"),
        compute=d.get("compute"), device=d.get("device"), records=int(d.get("records") or 0),
        expected_records=d.get("expected_records"), finished=bool(d.get("finished", True)),
        metrics=dict(d.get("metrics") or {}), per_record={c: list(per.get(c) or []) for c in RECORD_COLUMNS},
        seconds=d.get("seconds"), created=d.get("created"), format=FORMAT,
        size=None if image is None else tuple(image.shape[:2]),
    )


def _read_cli_v1(d: dict) -> RunFile:
    rows = [dict(r) for r in d.get("iterations") or []]
    for r in rows:  # v1 stored the mass shares as one list
        r.update(zip(("mass_cc", "mass_uc", "mass_wrong"), r.pop("mass", [None] * 3), strict=True))
    clean, adv = d.get("clean") or {}, d.get("adversarial") or {}
    return RunFile(
        model=_model_id(d), config=dict(d["config"]), image=None, source=str(d["image"]), mask=d.get("mask"),
        target_class=d.get("target_class"), device=d.get("device"), records=len(rows),
        metrics={"clean_acc": clean.get("acc"), "clean_miou": clean.get("miou"), "result_acc": adv.get("acc"),
                 "result_miou": adv.get("miou"), "best_index": adv.get("best_index")},
        per_record=columns(rows), seconds=d.get("seconds"), format=CLI_V1,
        size=tuple(d["size"]) if d.get("size") else None,
    )


def _read_app_v1(d: dict) -> RunFile:
    src = d.get("source") or {}
    image, labels = _arrays(src.get("image_png"), src.get("labels_png"))
    per = d.get("per_record") or {}
    m = d.get("metrics") or {}
    return RunFile(
        model=_model_id(d), config=dict(d.get("config") or {}), image=image, labels=labels,
        source=f"example:{src['example']}" if src.get("example") else "upload",
        mask=None if labels is None else "upload", compute=d.get("compute"), records=int(d.get("records") or 0),
        expected_records=d.get("expected_records"), finished=bool(d.get("finished", True)),
        metrics={k: m.get(k) for k in (*METRICS, "last_acc", "last_miou") if k in m},
        per_record={c: list(per.get(c) or []) for c in RECORD_COLUMNS}, created=d.get("created"), format=APP_CARD_V1,
        size=None if image is None else tuple(image.shape[:2]),
    )
