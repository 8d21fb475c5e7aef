"""Weight files: the cache directory, download-on-first-use, and safe checkpoint reading.

* Cache: ``$TSALLIS_CACHE`` (default ``~/.cache/tsallispgd``).  Every zoo model has fixed file names under it, so
  a file put there by hand and a downloaded file are the same thing: :func:`ensure_file` returns the path either
  way, and the adapters load only from that path.
* Downloads use short timeouts and a tqdm progress bar, write ``<file>.part`` and rename it when complete and
  verified (sha256, or an OpenMMLab-style 8-hex sha256 prefix, when known).  ``TSALLIS_OFFLINE=1`` (all sources)
  and ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` (Hugging Face sources) turn downloads off.
  Failure raises :class:`ModelUnavailable` with one message: which model, which file, where to put it.
* Reading: ``.safetensors`` via safetensors; ``.pt``/``.pth``/``.bin`` via ``torch.load(weights_only=True)``
  (plus plain numpy scalars/arrays, which old checkpoints keep in their ``meta``).  Anything else is refused
  (:class:`UnsafeCheckpoint`) unless the caller opts in with ``trusted=True`` or ``TSALLIS_TRUST_PICKLE=1``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from attack_engine.models.base import ModelUnavailable

DEFAULT_CACHE = Path("~/.cache/tsallispgd")
CONNECT_TIMEOUT_S = 10.0
_TRUE = {"1", "true", "yes", "on"}


class UnsafeCheckpoint(ValueError):
    """A checkpoint needs full unpickling (arbitrary code) and the caller did not opt in."""


def cache_dir() -> Path:
    """Where downloaded weights live: ``$TSALLIS_CACHE`` or ``~/.cache/tsallispgd``."""
    return Path(os.environ.get("TSALLIS_CACHE") or DEFAULT_CACHE).expanduser()


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def offline(hf: bool = False) -> bool:
    """True when downloads are turned off (``TSALLIS_OFFLINE``; for HF sources also ``HF_HUB_OFFLINE``)."""
    if _env_true("TSALLIS_OFFLINE"):
        return True
    return hf and (_env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"))


def trust_pickle_env() -> bool:
    return _env_true("TSALLIS_TRUST_PICKLE")


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def openmmlab_hash(url_or_name: str) -> str | None:
    """The sha256 prefix OpenMMLab puts in its file names (``..._20200605_003338-2966598c.pth``), if any."""
    m = re.search(r"-([0-9a-f]{8,64})\.(?:pth|pt|bin|safetensors)$", url_or_name)
    return m.group(1) if m else None


def _unavailable(model_id: str, dest: Path, url: str | None, why: str, others: list[Path] | None = None
                 ) -> ModelUnavailable:
    src = f" from {url}" if url else ""
    alt = f" ({' or '.join(repr(o.name) for o in others)} in the same folder also works)" if others else ""
    return ModelUnavailable(
        f"model {model_id!r} needs the weight file {dest.name!r}, which is not on this machine and could not be "
        f"downloaded ({why}). Get it{src} and put it at {dest}{alt} "
        f"(the folder is $TSALLIS_CACHE, default {DEFAULT_CACHE})."
    )


def ensure_file(model_id: str, dest: Path, urls: list[str] | str | None, *, sha256: str | None = None,
                hf: bool = False, timeout: float = CONNECT_TIMEOUT_S, progress: bool = True) -> Path:
    """Return ``dest``; download it first (from the first URL that works) when it is missing.

    ``sha256`` may be a full digest or a prefix (OpenMMLab style).  Raises :class:`ModelUnavailable` when the file
    is missing and cannot be fetched (offline, no network, HTTP error, checksum mismatch).
    """
    url_list = [urls] if isinstance(urls, str) else list(urls or [])
    return ensure_any(model_id, [(Path(dest), u) for u in url_list] or [(Path(dest), None)], sha256=sha256, hf=hf,
                      timeout=timeout, progress=progress)


def ensure_any(model_id: str, candidates: list[tuple[Path, str | None]], *, sha256: str | None = None,
               hf: bool = False, timeout: float = CONNECT_TIMEOUT_S, progress: bool = True) -> Path:
    """The first candidate file that exists; else download candidates in order (an HTTP 404 moves to the next).

    Any other failure (offline, no network, checksum) raises :class:`ModelUnavailable` at once, naming the first
    candidate as the file to put in place.
    """
    for dest, _ in candidates:
        if Path(dest).is_file():
            return Path(dest)
    first, first_url = Path(candidates[0][0]), candidates[0][1]
    others = [Path(d) for d, _ in candidates[1:] if Path(d).name != first.name]
    if first_url is None:
        raise _unavailable(model_id, first, None, "no download address is known", others)
    if offline(hf=hf):
        var = "TSALLIS_OFFLINE/HF_HUB_OFFLINE" if hf else "TSALLIS_OFFLINE"
        raise _unavailable(model_id, first, first_url, f"downloads are off: {var} is set", others)
    errors = []
    for dest, url in candidates:
        if url is None:
            continue
        try:
            _download(url, Path(dest), sha256=sha256, timeout=timeout, progress=progress)
            return Path(dest)
        except _NotFound as e:
            errors.append(str(e))
        except (OSError, urllib.error.URLError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise _unavailable(model_id, first, first_url, f"{type(e).__name__}: {reason}", others) from None
    raise _unavailable(model_id, first, first_url, "; ".join(errors), others)


class _NotFound(OSError):
    pass


class _RecordingRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib does, keeping the first ``X-Linked-Etag`` header seen."""

    def __init__(self, sink: list[str]) -> None:
        self.sink = sink

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        value = headers.get("X-Linked-Etag")
        if value and not self.sink:
            self.sink.append(value)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download(url: str, dest: Path, *, sha256: str | None, timeout: float, progress: bool) -> None:
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    req = urllib.request.Request(url, headers={"User-Agent": "tsallispgd-explorer"})
    linked: list[str] = []
    opener = urllib.request.build_opener(_RecordingRedirects(linked))
    try:
        resp = opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise _NotFound(f"HTTP 404 for {url}") from None
        raise
    h = hashlib.sha256()
    try:
        with resp, open(part, "wb") as f:
            total = int(resp.headers.get("Content-Length") or 0) or None
            # Hugging Face sends the LFS file's sha256 as X-Linked-Etag (on the redirect to its CDN).
            etag = (linked[0] if linked else resp.headers.get("X-Linked-Etag") or "").strip('" ').lower()
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                      disable=not progress) as bar:
                while block := resp.read(1 << 20):
                    f.write(block)
                    h.update(block)
                    bar.update(len(block))
        digest = h.hexdigest()
        expected = (sha256 or (etag if re.fullmatch(r"[0-9a-f]{64}", etag) else "")).lower()
        if expected and not digest.startswith(expected):
            raise ValueError(f"checksum mismatch for {url}: sha256 {digest[:16]}…, expected {expected[:16]}…")
        if total is not None and part.stat().st_size != total:
            raise ValueError(f"incomplete download of {url}: {part.stat().st_size} of {total} bytes")
        shutil.move(str(part), str(dest))
    finally:
        part.unlink(missing_ok=True)


# -- reading -------------------------------------------------------------------------------------------------------
# The plain-data numpy types an OpenMMLab checkpoint's ``meta`` holds (``seed`` as np.int64, scores in
# ``hook_msgs`` as np.float64, palettes as arrays): their dtypes, by name.
META_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
               "float32", "float64", "str")


def numpy_meta_globals() -> list[Any]:
    """Exactly the globals needed to unpickle numpy scalars and arrays of :data:`META_DTYPES`, none that run code.

    ``scalar`` / ``_reconstruct`` are allowed under both names they are pickled with: ``numpy.core.multiarray``
    (numpy 1.x, i.e. every published OpenMMLab checkpoint) and ``numpy._core.multiarray`` (numpy 2.x).
    """
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    out: list[Any] = [np.ndarray, np.dtype, *{type(np.dtype(n)) for n in META_DTYPES}]
    for name in ("scalar", "_reconstruct"):
        fn = getattr(core.multiarray, name)
        out += [(fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    return out


def read_checkpoint(path: str | Path, *, trusted: bool | None = None, pinned_sha256: str | None = None) -> Any:
    """Read a ``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin`` file without running code from it.

    ``torch.load(weights_only=True)`` first, then with :func:`numpy_meta_globals` allowed (OpenMMLab ``meta``).
    ``trusted=True`` (or ``TSALLIS_TRUST_PICKLE=1`` when ``trusted`` is None) allows full unpickling, for
    legacy checkpoints **you trust**: unpickling can run arbitrary code.  So does a file whose sha256 equals
    ``pinned_sha256`` (a full 64-hex digest from the zoo table: the exact file its publisher released).
    """
    path = Path(path)
    if trusted is None:
        trusted = trust_pickle_env()
    if not trusted and pinned_sha256 and re.fullmatch(r"[0-9a-f]{64}", pinned_sha256.lower()):
        trusted = sha256_of(path) == pinned_sha256.lower()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if trusted:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as first:
        try:
            with torch.serialization.safe_globals(numpy_meta_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            pass
        detail = str(first).strip().splitlines()
        why = next((ln for ln in detail if "Unsupported global" in ln or "GLOBAL" in ln), detail[0] if detail else "")
        raise UnsafeCheckpoint(
            f"refused to load {path.name}: it needs full unpickling, which can run code ({why.strip()}). "
            "Load only plain tensors (re-save the state_dict, or use .safetensors), or, if you trust the file, "
            "pass trusted=True or set TSALLIS_TRUST_PICKLE=1."
        ) from None


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint: ``state_dict``/``model``/``module`` entries unwrapped, ``module.`` stripped."""
    for key in ("state_dict", "model_state_dict", "model", "module"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a state_dict (a mapping of tensors), got {type(obj).__name__}")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ValueError("the checkpoint holds no tensors")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd
