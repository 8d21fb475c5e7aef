"""The evaluation loop: datasets × attacks × ε × seeds, resumable, shardable with ``torchrun``.

Work is cut into *units*: one batch of images (fixed by ``--batch-size`` and the dataset order) × one
method × one seed, with every ε stacked into the batch (per-image ε).  Batch ``b`` belongs to rank
``b mod world_size``, so every batch has the same images whatever the number of processes, and each
image's random start is drawn from its own generator seeded by ``(seed, image id)`` — a unit's numbers
do not depend on which process ran it.

Per-image confusion matrices are appended (sparse, one JSON line per image × setting) to
``OUT/records/rank{r}.jsonl`` as soon as a unit finishes and are fsync'ed; a rerun of the same command
reads every record file and skips the units already complete.  At the end each rank sums the matrices
of its own batches and the sums are all-reduced, so ACC/mIoU come from one dataset-level confusion
matrix exactly as in a single-process run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from attack_engine.attack import AttackConfig, AttackRun, expected_records, model_ignore_index
from attack_engine.evaluate.datasets import Dataset, DatasetError, Sample, check_label_range, preprocess
from attack_engine.metrics import confusion_matrix, mean_iou, pixel_accuracy
from attack_engine.objectives import DEFAULT_TSALLIS_SCHEDULE
from attack_engine.registry import attack_title, get_attack

FORMAT = "tsallispgd-eval/1"
CLEAN = "clean"


@dataclass(frozen=True, order=True)
class Method:
    """An attack and, for TsallisPGD, its q-schedule (``None`` = the paper's ``linear:-2:1``)."""

    attack: str
    schedule: str | None = None

    @property
    def name(self) -> str:
        return self.attack if self.schedule is None else f"{self.attack}[{self.schedule}]"

    @property
    def title(self) -> str:
        base = attack_title(self.attack)
        return base if self.schedule is None else f"{base} ({self.schedule})"


def make_methods(attacks: Iterable[str], schedules: list[str] | None) -> list[Method]:
    """Expand each attack that takes a schedule (TsallisPGD) into one method per schedule (``None`` keeps the default
    schedule unnamed)."""
    out: list[Method] = []
    for a in attacks:
        if schedules and get_attack(a).schedulable:
            out.extend(Method(a, s) for s in schedules)
        else:
            out.append(Method(a))
    if len(set(out)) != len(out):
        raise ValueError("the same attack/schedule is listed twice")
    return out


def setting_key(method: Method, eps: float, seed: int) -> str:
    return f"{method.name}|{eps!r}|{seed}"


def image_seed(seed: int, image_id: str) -> int:
    """A 63-bit generator seed from the run seed and the image id (independent of batching)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{image_id}".encode()).digest()[:8], "little") & (2**63 - 1)


@dataclass
class EvalConfig:
    """Everything that defines an evaluation (see ``python -m attack_engine eval --help``)."""

    model: str
    data: str
    methods: list[Method]
    eps: list[float]
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: int = 300
    optimizer: str = "apgd"
    size: tuple[int, int] | None = None
    resize: int | None = None
    labels: str = "gt"  # gt | clean
    split: str = "val"
    voc_boundary: str = "ignore"
    ade_classes: int | None = None
    batch_size: int = 8
    max_images: int | None = None
    amp: str = "off"  # off | bf16 | fp16
    device: str = "auto"
    deterministic: bool = False  # deterministic GPU kernels, no TF32 (CPU runs are deterministic anyway)
    out: Path = Path("eval-out")
    progress: bool = True

    def fingerprint(self, dataset: Dataset, num_classes: int, size: tuple[int, int]) -> dict:
        """What must match for records in ``out`` to be reused."""
        return {
            "format": FORMAT, "model": self.model, "data": dataset.describe() | {"spec": self.data},
            "labels": self.labels, "size": list(size), "resize": self.resize, "steps": self.steps,
            "optimizer": self.optimizer, "amp": self.amp, "num_classes": num_classes,
        }


@dataclass
class Record:
    """One image under one setting: its sparse confusion matrix (flat index ``true*C + pred``, count)."""

    image: str
    key: str
    idx: np.ndarray
    cnt: np.ndarray

    def dense(self, c: int) -> torch.Tensor:
        m = torch.zeros(c * c, dtype=torch.int64)
        m[torch.from_numpy(self.idx)] = torch.from_numpy(self.cnt)
        return m.view(c, c)

    def line(self) -> str:
        return json.dumps({"image": self.image, "key": self.key, "i": self.idx.tolist(), "n": self.cnt.tolist()},
                          separators=(",", ":"))


def _sparse(cm: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    flat = cm.reshape(-1).cpu()
    nz = torch.nonzero(flat).flatten()
    return nz.numpy().astype(np.int64), flat[nz].numpy().astype(np.int64)


def load_records(folder: Path) -> dict[tuple[str, str], Record]:
    """Every complete record line in ``folder/*.jsonl`` (a torn last line from a kill is skipped)."""
    out: dict[tuple[str, str], Record] = {}
    if not folder.is_dir():
        return out
    for f in sorted(folder.glob("*.jsonl")):
        with f.open() as fh:
            for ln in fh:
                if not ln.endswith("\n"):
                    continue
                try:
                    d = json.loads(ln)
                    r = Record(d["image"], d["key"], np.asarray(d["i"], dtype=np.int64), np.asarray(d["n"], dtype=np.int64))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
                out[(r.image, r.key)] = r
    return out


class RecordWriter:
    """Appends records to this rank's file; each unit is flushed and fsync'ed before the next starts."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size:
            with path.open("rb") as fh:
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"
        else:
            torn = False
        self.fh = path.open("a")
        if torn:  # a killed run left half a line: end it so the next record starts clean
            self.fh.write("\n")

    def write(self, records: list[Record]) -> None:
        self.fh.write("".join(r.line() + "\n" for r in records))
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


@dataclass
class Dist:
    """This process's place in a ``torchrun`` job (world 1 when started plainly)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_dist(device: str) -> Dist:
    """Read torchrun's environment, pick the device (one GPU per process) and join the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda but CUDA is not available")
        if dev.index is None:
            if local >= torch.cuda.device_count():
                raise ValueError(f"process {local} on this node has no GPU (only {torch.cuda.device_count()}); "
                                 "use --nproc_per_node at most the number of GPUs")
            dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    d = Dist(rank, world, local, dev)
    if world > 1 or "TORCHELASTIC_RUN_ID" in os.environ:  # under torchrun (even 1 process): join the group
        import torch.distributed as tdist

        d.backend = "nccl" if dev.type == "cuda" else "gloo"
        if not tdist.is_initialized():
            tdist.init_process_group(d.backend, **({"device_id": dev} if dev.type == "cuda" else {}))
    return d


def _barrier(d: Dist) -> None:
    if d.backend is not None:
        import torch.distributed as tdist

        tdist.barrier()


def _all_reduce(d: Dist, t: torch.Tensor) -> torch.Tensor:
    if d.backend is None:
        return t
    import torch.distributed as tdist

    t = t.to(d.device)
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t.cpu()


def _all_gather(d: Dist, obj):
    if d.backend is None:
        return [obj]
    import torch.distributed as tdist

    out = [None] * d.world
    tdist.all_gather_object(out, obj)
    return out


@dataclass
class EvalResult:
    """Dataset-level confusion matrices per setting key, per-image metrics and the worst case over methods."""

    num_classes: int
    keys: list[str]
    cms: dict[str, torch.Tensor]
    per_image: list[dict]  # image, key, acc, miou, valid
    worst: dict[str, dict]  # "eps|seed" -> {"cm": tensor, "acc_mean_min": float, "images": n}
    images: int
    seconds: float
    units_run: int
    units_skipped: int
    dist: Dist | None = None


def _open_out(cfg: EvalConfig, dataset: Dataset, c: int, size: tuple[int, int], d: Dist) -> dict:
    """Check that ``cfg.out`` holds this evaluation (or nothing), write its ``run.json`` and read the records done."""
    out = Path(cfg.out)
    fp = cfg.fingerprint(dataset, c, size)
    run_file = out / "run.json"
    if run_file.exists():
        old = json.loads(run_file.read_text())
        if old.get("fingerprint") != fp:
            diff = sorted(k for k in fp if old.get("fingerprint", {}).get(k) != fp[k])
            raise ValueError(f"{out} holds results of a different evaluation (differs in: {', '.join(diff)}); "
                             "use another --out or delete it")
    _barrier(d)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        if not run_file.exists():
            run_file.write_text(json.dumps({"fingerprint": fp}, indent=1))
    done = load_records(out / "records")
    _barrier(d)  # every rank has read the records before anyone appends
    return done


def _load_batch(cfg: EvalConfig, dataset: Dataset, batch: list[Sample], size, c: int, device) -> list[torch.Tensor]:
    """Images ``[B,3,H,W]`` and labels ``[B,H,W]`` (None when the clean prediction serves as labels)."""
    imgs, labs = [], []
    for smp in batch:
        img, lab = dataset.load(smp, want_labels=cfg.labels == "gt")
        xi, yi = preprocess(img, lab, size, cfg.resize)
        if yi is not None:
            check_label_range(yi.numpy(), c, str(smp.label or smp.id))
        imgs.append(xi)
        labs.append(yi)
    return [torch.stack(imgs).to(device), torch.stack(labs).to(device) if cfg.labels == "gt" else None]


def _attack_units(cfg: EvalConfig, model, batch: list[Sample], x, y, units, c: int, bar,
                  label: str) -> Iterator[list[Record]]:
    """Every (method, seed) unit of one batch, all ε stacked into the batch; one record per image × ε."""
    n, ne = len(batch), len(cfg.eps)
    xs = x.repeat(ne, 1, 1, 1)  # row e*n + i = image i at eps[e]
    ys = y.repeat(ne, 1, 1)
    eps_t = torch.tensor(cfg.eps, dtype=torch.float32).repeat_interleave(n)
    for m, seed in units:
        acfg = AttackConfig(attack=m.attack, optimizer=cfg.optimizer, eps=max(cfg.eps), steps=cfg.steps,
                            schedule=m.schedule, seed=seed, telemetry=False)
        seeds = [image_seed(seed, smp.id) for smp in batch] * ne
        bar.set_description_str(f"{label} {m.name} seed {seed}", refresh=False)
        run = AttackRun(model, xs, ys, acfg, eps=eps_t, noise_seeds=seeds)
        for _ in run:
            bar.update(n * ne)
        cm = confusion_matrix(run.result.pred, ys, c, run.cfg.ignore_index)  # the model's (AttackRun resolves it)
        yield [Record(smp.id, setting_key(m, e, seed), *_sparse(cm[ei * n + i]))
               for ei, e in enumerate(cfg.eps) for i, smp in enumerate(batch)]


def _worst_case(cfg: EvalConfig, rows: list[dict], wcm: torch.Tensor, wkeys: list[str]) -> dict[str, dict]:
    """Per ε and seed: the worst case over methods (mean over images of the per-image minimum accuracy)."""
    worst: dict[str, dict] = {}
    by_img: dict[str, dict[str, float]] = {}
    for r in rows:
        by_img.setdefault(r["image"], {})[r["key"]] = r["acc"]
    for wi, wk in enumerate(wkeys):
        e_s, s_s = wk.split("|")
        mins = []
        for accs in by_img.values():
            vals = [accs[setting_key(m, float(e_s), int(s_s))] for m in cfg.methods]
            vals = [v for v in vals if not math.isnan(v)]
            if vals:
                mins.append(min(vals))
        worst[wk] = {"eps": float(e_s), "seed": int(s_s), "cm": wcm[wi],
                     "acc_mean_min": float(np.mean(mins)) if mins else math.nan, "images": len(mins)}
    return worst


def _aggregate(cfg: EvalConfig, done: dict, my_ids: list[str], keys: list[str], c: int, d: Dist, samples):
    """Sum my images' matrices per setting and per worst case, then over ranks; per-image rows in dataset order."""
    kidx = {k: i for i, k in enumerate(keys)}
    cms = torch.zeros(len(keys), c, c, dtype=torch.int64)
    rows: list[dict] = []
    wkeys = [f"{e!r}|{s}" for e in cfg.eps for s in cfg.seeds]
    wcm = torch.zeros(len(wkeys), c, c, dtype=torch.int64)
    for img in my_ids:
        per: dict[str, torch.Tensor] = {}
        for k in keys:
            r = done.get((img, k))
            if r is None:
                raise RuntimeError(f"internal: no result for image {img} setting {k}")
            m = r.dense(c)
            per[k] = m
            cms[kidx[k]] += m
            acc, miou = float(pixel_accuracy(m)), float(mean_iou(m))
            rows.append({"image": img, "key": k, "acc": acc, "miou": miou, "valid": int(m.sum())})
        for wi, wk in enumerate(wkeys):
            e_s, s_s = wk.split("|")
            cands = [per[setting_key(m, float(e_s), int(s_s))] for m in cfg.methods]
            accs = [float(pixel_accuracy(m)) for m in cands]
            accs = [a if not math.isnan(a) else math.inf for a in accs]
            wcm[wi] += cands[int(np.argmin(accs))]
    cms = _all_reduce(d, cms)
    wcm = _all_reduce(d, wcm)
    rows = [r for part in _all_gather(d, rows) for r in part]
    order = {smp.id: i for i, smp in enumerate(samples)}
    rows.sort(key=lambda r: (order[r["image"]], kidx[r["key"]]))
    return {k: cms[i] for i, k in enumerate(keys)}, rows, _worst_case(cfg, rows, wcm, wkeys)


def run_eval(cfg: EvalConfig, model, dataset: Dataset, d: Dist, log=print) -> EvalResult:
    """Evaluate ``model`` on ``dataset`` for every method × ε × seed of ``cfg`` (see module docstring)."""
    t0 = time.perf_counter()
    info = getattr(model, "info", None)
    c = int(model.num_classes)
    size = cfg.size or (tuple(info.input_size) if info is not None and info.input_size else None)
    if size is None:
        raise ValueError("this model has no fixed input size; give --size (e.g. 512)")
    if dataset.num_classes is not None and dataset.num_classes != c and cfg.labels == "gt":
        raise DatasetError(f"the dataset's labels have {dataset.num_classes} classes but model {cfg.model} has {c}")
    samples: list[Sample] = dataset.samples[: cfg.max_images] if cfg.max_images else list(dataset.samples)
    done = _open_out(cfg, dataset, c, size, d)
    keys = [CLEAN] + [setting_key(m, e, s) for s in cfg.seeds for m in cfg.methods for e in cfg.eps]
    bs = cfg.batch_size
    batches = [samples[i: i + bs] for i in range(0, len(samples), bs)]
    mine = [b for b in range(len(batches)) if b % d.world == d.rank]
    ne = len(cfg.eps)
    records_per_run = expected_records(AttackConfig(optimizer=cfg.optimizer, steps=cfg.steps))

    def pending(batch: list[Sample]) -> list[tuple[Method, int]]:
        return [(m, s) for s in cfg.seeds for m in cfg.methods
                if any((smp.id, setting_key(m, e, s)) not in done for smp in batch for e in cfg.eps)]

    todo = {b: pending(batches[b]) for b in mine}
    need_clean = {b: any((smp.id, CLEAN) not in done for smp in batches[b]) for b in mine}
    total_work = sum(len(todo[b]) * len(batches[b]) * ne * records_per_run for b in mine)
    n_units = len(mine) * len(cfg.methods) * len(cfg.seeds)
    units_run = sum(len(v) for v in todo.values())
    if d.main:
        log(f"{len(samples)} images in {len(batches)} batches of ≤{bs}, {len(cfg.methods)} methods × {ne} ε × "
            f"{len(cfg.seeds)} seeds, {cfg.steps} steps, {d.world} process(es) on {d.device.type}; "
            f"rank 0 has {units_run} of its {n_units} units to run")
    writer = RecordWriter(Path(cfg.out) / "records" / f"rank{d.rank}.jsonl")
    bar = tqdm(total=total_work, unit="img·it", unit_scale=True, dynamic_ncols=True, file=sys.stderr, smoothing=0.05,
               desc="eval", disable=not (cfg.progress and d.main and total_work))
    try:
        for b in mine:
            batch = batches[b]
            if not todo[b] and not need_clean[b]:
                continue
            x, y = _load_batch(cfg, dataset, batch, size, c, d.device)
            with torch.no_grad():
                clean_pred = model(x).argmax(1)
            y = clean_pred.clone() if y is None else y
            units = ([[Record(smp.id, CLEAN, *_sparse(cm)) for smp, cm in zip(batch, confusion_matrix(clean_pred, y, c, model_ignore_index(model)), strict=True)]]
                     if need_clean[b] else [])
            for recs in itertools.chain(units, _attack_units(cfg, model, batch, x, y, todo[b], c, bar,
                                                             f"batch {b + 1}/{len(batches)}")):  # written per unit
                writer.write(recs)
                done.update({(r.image, r.key): r for r in recs})
    finally:
        bar.close()
        writer.close()
    cms, rows, worst = _aggregate(cfg, done, [smp.id for b in mine for smp in batches[b]], keys, c, d, samples)
    _barrier(d)
    return EvalResult(c, keys, cms, rows, worst, len(samples), time.perf_counter() - t0, units_run,
                      n_units - units_run, d)


def config_dict(cfg: EvalConfig) -> dict:
    d = asdict(cfg)
    d["methods"] = [m.name for m in cfg.methods]
    d["out"] = str(cfg.out)
    d["default_tsallis_schedule"] = DEFAULT_TSALLIS_SCHEDULE
    return d


def metrics_dict(cfg: EvalConfig, res: EvalResult, dataset: Dataset, size: tuple[int, int]) -> dict:
    """The JSON-able summary of an evaluation that :mod:`attack_engine.evaluate.report` works on."""
    from attack_engine.evaluate.report import FORMAT as METRICS_FORMAT
    from attack_engine.metrics import mean_class_accuracy

    def trio(cm: torch.Tensor) -> dict:
        return {"acc": float(pixel_accuracy(cm)), "miou": float(mean_iou(cm)), "macc": float(mean_class_accuracy(cm))}

    settings = [{"method": m.name, "eps": e, "seed": s, **trio(res.cms[setting_key(m, e, s)])}
                for s in cfg.seeds for m in cfg.methods for e in cfg.eps]
    worst = [{"eps": w["eps"], "seed": w["seed"], "acc_mean_min": w["acc_mean_min"], "images": w["images"],
              **{k: v for k, v in trio(w["cm"]).items() if k != "macc"}} for w in res.worst.values()]
    d = res.dist or Dist()
    return {
        "format": METRICS_FORMAT, "model": cfg.model, "dataset": dataset.describe(), "images": res.images,
        "num_classes": res.num_classes, "size": list(size), "config": config_dict(cfg),
        "methods": [{"name": m.name, "attack": m.attack, "schedule": m.schedule, "title": m.title} for m in cfg.methods],
        "eps": list(cfg.eps), "seeds": list(cfg.seeds), "clean": trio(res.cms[CLEAN]), "settings": settings,
        "worst": worst, "seconds": res.seconds, "world": d.world, "device": d.device.type,
        "device_name": torch.cuda.get_device_name(d.device) if d.device.type == "cuda" else "cpu",
        "torch": torch.__version__, "code": code_version(),
        "units_run_rank0": res.units_run, "units_resumed_rank0": res.units_skipped,
        "confusion": {k: {"i": i.tolist(), "n": n.tolist()} for k, (i, n) in ((k, _sparse(v)) for k, v in res.cms.items())},
    }


def per_image_rows(res: EvalResult) -> list[dict]:
    """per_image.csv rows: image, method, ε, seed, pixel accuracy, mIoU, counted pixels."""
    out = []
    for r in res.per_image:
        if r["key"] == CLEAN:
            meth, eps, seed = CLEAN, 0.0, ""
        else:
            meth, e, seed = r["key"].split("|")
            eps = float(e)
        out.append({"image": r["image"], "method": meth, "eps": eps, "eps_255": round(eps * 255, 6), "seed": seed,
                    "acc": r["acc"], "miou": r["miou"], "valid_pixels": r["valid"]})
    return out


def code_version() -> dict:
    """The git commit of this checkout and whether tracked files differ from it (best effort)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": head, "dirty": bool(dirty)} if head else {}
