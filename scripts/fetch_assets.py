"""Re-fetch the bundled MediaPipe selfie-segmentation weights from npm, or verify the committed copies.

    python scripts/fetch_assets.py            # npm pack, check sha256, copy into assets/models/
    python scripts/fetch_assets.py --verify   # offline: check the files in assets/models/ only
    python scripts/fetch_assets.py --force    # overwrite files that exist but do not match

Needs only the Python standard library (and ``npm`` for fetching).  Exit status 0 = all files good.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "assets" / "models"
PACKAGE = "@mediapipe/selfie_segmentation@0.1.1675465747"
# file name inside the npm tarball's package/ folder -> sha256 (same table as attack_engine.models.selfie)
FILES = {
    "selfie_segmentation.tflite": "8d13b7fae74af625c641226813616a2117bd6bca19eb3b75574621fc08557f27",
    "selfie_segmentation_landscape.tflite": "4aafe6223bb8dac6fac8ca8ed56852870a33051ef3f6238822d282a109962894",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify(directory: Path = MODELS) -> list[str]:
    """Problems with the files in ``directory`` (empty list = all present with the right sha256)."""
    problems = []
    for name, want in FILES.items():
        p = directory / name
        if not p.is_file():
            problems.append(f"{p}: missing")
        elif (got := sha256(p)) != want:
            problems.append(f"{p}: sha256 {got}, expected {want}")
    return problems


def fetch(dest: Path = MODELS, force: bool = False) -> None:
    """``npm pack`` the package into a temporary folder, check each file, then copy it to ``dest``."""
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is not installed; install Node.js/npm, or restore the files with `git checkout -- assets/models`")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"npm pack {PACKAGE} ...", flush=True)
        out = subprocess.run([npm, "pack", PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"npm pack failed ({out.returncode}):\n{out.stderr.strip()}")
        tgz = Path(tmp) / out.stdout.strip().splitlines()[-1]
        with tarfile.open(tgz) as tar:
            for name, want in FILES.items():
                member = tar.getmember(f"package/{name}")
                data = tar.extractfile(member).read()
                got = hashlib.sha256(data).hexdigest()
                if got != want:
                    sys.exit(f"{name} from npm has sha256 {got}, expected {want}; not copied")
                target = dest / name
                if target.is_file() and sha256(target) == want:
                    print(f"ok       {target} (already present)")
                    continue
                if target.exists() and not force:
                    sys.exit(f"{target} exists with a different sha256; rerun with --force to overwrite it")
                dest.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                print(f"fetched  {target} sha256 {got}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verify", action="store_true", help="only check the files in assets/models (no network)")
    ap.add_argument("--force", action="store_true", help="overwrite existing files whose sha256 does not match")
    ap.add_argument("--dest", type=Path, default=MODELS, help="target folder (default: assets/models)")
    args = ap.parse_args(argv)
    if not args.verify:
        fetch(args.dest, force=args.force)
    problems = verify(args.dest)
    for p in problems:
        print(f"BAD      {p}")
    if not problems:
        for name, want in FILES.items():
            print(f"ok       {args.dest / name} sha256 {want}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
