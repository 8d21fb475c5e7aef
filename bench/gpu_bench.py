"""GPU benchmark (items 5, 16): iterations/second and attack overhead on a GPU.

Default matrix (issue 16): the bundled selfie model at its native 256² and SegFormer-B0 (150 classes) at 512² and
1024², batch 1 and 8, fp32 and bf16, telemetry off and on.  Run from the repository root on a machine with an
NVIDIA GPU::

    python bench/gpu_bench.py                 # writes gpu_bench.md / gpu_bench.json to $OUT or ./bench/out
    python bench/gpu_bench.py --models segformer-b0 --dtypes bf16 --sizes 512 --batches 8 --rounds 5

For each model (random weights) and precision (fp32; bf16 = ``SegModel.with_autocast(torch.bfloat16)``, the
attack objective itself stays float64):

* ``bare``: forward, ``F.cross_entropy`` on the logits, backward to the input, sign step, projection;
* ``pgd`` / ``apgd``: one :class:`attack_engine.AttackRun` record (TsallisPGD), telemetry off and on;

sampled round-robin (order alternating) in samples of k iterations with ``torch.cuda.synchronize()`` around each
sample; the overhead ratio is variant / bare per round, median [IQR].  Peak GPU memory per variant: what its first
sample allocated on top of the memory live before it (``torch.cuda.max_memory_allocated`` − ``memory_allocated``),
i.e. the iteration's working memory including the attack's reusable objective buffer.  Needs only torch (+ numpy); transformers / mmseg are used when present,
else the plain-torch re-implementations in ``bench/models.py``.  Exits with status 2 and a message when CUDA is
not available (``--allow-cpu`` runs it anyway, for a smoke test with tiny sizes).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from attack_engine import AttackConfig, AttackRun  # noqa: E402
from bench import models as M  # noqa: E402
from bench.common import Stats, bare_loop, interleave, paired_ratios, record_sampler  # noqa: E402

EPS = 8 / 255
VARIANTS = ("pgd", "pgd+tel", "apgd", "apgd+tel")
DTYPES = {"fp32": None, "bf16": torch.bfloat16}
NATIVE = {"selfie": 256}  # models that resize any input to a fixed size: measured at that size only
BUILDERS = {
    "selfie": lambda impl, dev: M.selfie(device=dev),
    "segformer-b0": lambda impl, dev: M.segformer_b0(150, device=dev, impl=impl),
    "pspnet-r50": lambda impl, dev: M.pspnet_r50(21, device=dev, impl=impl),
}


def bench_one(name: str, dtype_name: str, size: int, batch: int, args, dev: torch.device) -> dict:
    impl = {"auto": "auto", "torch": "torch"}[args.impl]
    model, used = BUILDERS[name](impl, dev)
    model.with_autocast(DTYPES[dtype_name])
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(batch, 3, size, size, generator=g).to(dev)
    with torch.no_grad():
        y = model(x0).argmax(1)
    k, rounds = args.k, args.rounds
    steps = 4 * ((rounds + 2) * k + 4)  # APGD's first stage covers every sample (see bench_overhead)
    samplers = {"bare": functools.partial(bare_loop(model, x0, y, EPS, EPS / 4), k)}
    runs = {}
    for v in VARIANTS:
        cfg = AttackConfig(attack="tsallis", optimizer=v.split("+")[0], eps=EPS, steps=steps,
                           telemetry=v.endswith("+tel"))
        runs[v] = AttackRun(model, x0, None, cfg)
        samplers[v] = functools.partial(record_sampler(iter(runs[v]), x0), k)
    peak = {}
    if dev.type == "cuda":  # one sample each on its own for the peak memory, then the timed rounds
        for n, s in samplers.items():  # what one sample allocates on top of what is live before it
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            s()
            torch.cuda.synchronize()
            peak[n] = torch.cuda.max_memory_allocated() - before
    samples = interleave(samplers, rounds, warmup=1)
    secs = {n: Stats.of(v) for n, v in samples.items()}
    return {
        "model": name, "impl": used, "dtype": dtype_name, "batch": batch, "size": size,
        "params": M.param_count(model), "k": k, "rounds": rounds,
        "it_per_s": {n: 1.0 / s.median for n, s in secs.items()},
        "seconds": {n: s.to_dict() for n, s in secs.items()},
        "ratio": {v: Stats.of(paired_ratios(samples[v], samples["bare"])).to_dict() for v in VARIANTS},
        "peak_bytes": peak,
    }


def markdown(res: dict) -> str:
    head = (f"GPU: {res['device']} | torch {res['torch']} | CUDA {res['cuda']} | cuDNN {res['cudnn']} | "
            f"TF32 matmul {res['tf32_matmul']}, TF32 cuDNN {res['tf32_cudnn']}")
    lines = [head, "",
             "| model (impl) | input | precision | bare it/s | PGD it/s | APGD it/s | PGD ratio | PGD+tel ratio "
             "| APGD ratio | APGD+tel ratio | working memory bare / PGD / PGD+tel |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["results"]:
        inp = f"{r.get('batch')}×3×{r.get('size')}²"
        if "error" in r:
            lines.append(f"| {r['model']} | {inp} | {r['dtype']} | error: {r['error']} |||||||| ")
            continue
        q = {v: Stats(**{**{k: r['ratio'][v][k] for k in ('median', 'q1', 'q3', 'n')}, 'lo': r['ratio'][v]['min'],
                         'hi': r['ratio'][v]['max']}) for v in VARIANTS}
        pk = r["peak_bytes"]
        mem = " / ".join(f"{pk[n] / 2**30:.1f} GiB" for n in ("bare", "pgd", "pgd+tel")) if pk else "n/a"
        ips = r["it_per_s"]
        lines.append(f"| {r['model']} ({r['impl']}) | {inp} | {r['dtype']} | {ips['bare']:.2f} | {ips['pgd']:.2f} "
                     f"| {ips['apgd']:.2f} | {q['pgd'].ratio()} | {q['pgd+tel'].ratio()} | {q['apgd'].ratio()} "
                     f"| {q['apgd+tel'].ratio()} | {mem} |")
    lines += ["", "Ratio = seconds per iteration of the variant / of the bare loop (forward + F.cross_entropy + "
              "backward + sign step + projection), per round, median [IQR]."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["selfie", "segformer-b0"], choices=list(BUILDERS))
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    ap.add_argument("--sizes", nargs="+", type=int, default=[512, 1024], help="input sides (selfie: 256 only)")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--k", type=int, default=4, help="iterations per sample")
    ap.add_argument("--impl", choices=("auto", "torch"), default="auto",
                    help="auto: transformers / mmseg when importable, else plain torch; torch: plain torch only")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "bench" / "out"))
    ap.add_argument("--allow-cpu", action="store_true", help="run without CUDA (smoke test; use tiny sizes)")
    args = ap.parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu_bench: CUDA is not available here (torch.cuda.is_available() is False); this benchmark needs an "
              "NVIDIA GPU. Nothing was run.", file=sys.stderr)
        return 2
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = dev.type == "cuda"
    res = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (smoke test)",
        "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "results": [],
    }
    t0 = time.perf_counter()
    combos = [(name, dt, size, b) for name in args.models for size in ([NATIVE[name]] if name in NATIVE else args.sizes)
              for b in args.batches for dt in args.dtypes]
    for name, dt, size, b in combos:
        t = time.perf_counter()
        try:
            r = bench_one(name, dt, size, b, args, dev)
        except Exception as e:  # report and go on with the next combination
            r = {"model": name, "dtype": dt, "size": size, "batch": b, "error": f"{type(e).__name__}: {e}"}
        r["wall_s"] = time.perf_counter() - t
        res["results"].append(r)
        print(f"[{time.perf_counter() - t0:6.1f} s] {name} {b}×{size}² {dt}: " +
              (r["error"] if "error" in r else ", ".join(f"{k} {v:.2f} it/s" for k, v in r["it_per_s"].items())),
              flush=True)
        if cuda:
            torch.cuda.empty_cache()
    res["wall_s"] = time.perf_counter() - t0
    md = markdown(res)
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_bench.md").write_text(md + "\n")
    (out / "gpu_bench.json").write_text(json.dumps(res, indent=1))
    print(f"wrote {out / 'gpu_bench.md'} and {out / 'gpu_bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
