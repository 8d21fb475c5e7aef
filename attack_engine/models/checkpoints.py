"""Weight files: the cache directory, download-on-first-use, and safe checkpoint reading.

* Cache: ``$TSALLIS_CACHE`` (default ``~/.cache/tsallispgd``).  Every zoo model has fixed file names under it, so
  a file put there by hand and a downloaded file are the same thing: :func:`ensure_file` returns the path either
  way, and the adapters load only from that path.
* Downloads go through the libraries: URLs through ``torch.hub.download_url_to_file`` (a ``.partial`` file renamed
  when complete and verified: sha256, or an OpenMMLab-style 8-hex sha256 prefix, when known), Hugging Face files
  through ``huggingface_hub.hf_hub_download`` (checked against the Hub's sha256 of the file); short timeouts.  ``TSALLIS_OFFLINE=1`` (all sources)
  and ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` (Hugging Face sources) turn downloads off.
  Failure raises :class:`ModelUnavailable` with one message: which model, which file, where to put it.
* Reading: ``.safetensors`` via safetensors; ``.pt``/``.pth``/``.bin`` via ``torch.load(weights_only=True)``
  (plus plain numpy scalars/arrays, which old checkpoints keep in their ``meta``).  Anything else is refused
  (:class:`UnsafeCheckpoint`) unless the caller opts in with ``trusted=True`` or ``TSALLIS_TRUST_PICKLE=1``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import shutil
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class HFFile:
    """A file in a Hugging Face model repository, fetched with ``huggingface_hub.hf_hub_download``."""

    repo: str
    filename: str
    revision: str = "main"

    def __str__(self) -> str:  # where to get it by hand (named in ModelUnavailable messages)
        return f"https://huggingface.co/{self.repo}/resolve/{self.revision}/{self.filename}"


Source = str | HFFile  # a URL (torch.hub.download_url_to_file) or a Hugging Face file


def ensure_file(model_id: str, dest: Path, urls: list[str] | str | None, *, sha256: str | None = None,
                hf: bool = False, timeout: float = CONNECT_TIMEOUT_S, progress: bool = True) -> Path:
    """Return ``dest``; download it first (from the first URL that works) when it is missing.

    ``sha256`` may be a full digest or a prefix (OpenMMLab style).  Raises :class:`ModelUnavailable` when the file
    is missing and cannot be fetched (offline, no network, HTTP error, checksum mismatch).
    """
    url_list = [urls] if isinstance(urls, str) else list(urls or [])
    return ensure_any(model_id, [(Path(dest), u) for u in url_list] or [(Path(dest), None)], sha256=sha256, hf=hf,
                      timeout=timeout, progress=progress)


def ensure_any(model_id: str, candidates: list[tuple[Path, Source | None]], *, sha256: str | None = None,
               hf: bool = False, timeout: float = CONNECT_TIMEOUT_S, progress: bool = True) -> Path:
    """The first candidate file that exists; else download candidates in order (a missing file moves to the next).

    Any other failure (offline, no network, checksum) raises :class:`ModelUnavailable` at once, naming the first
    candidate as the file to put in place.  ``hf`` (or any :class:`HFFile` source): ``HF_HUB_OFFLINE`` /
    ``TRANSFORMERS_OFFLINE`` also turn downloads off.
    """
    for dest, _ in candidates:
        if Path(dest).is_file():
            return Path(dest)
    first, first_src = Path(candidates[0][0]), candidates[0][1]
    others = [Path(d) for d, _ in candidates[1:] if Path(d).name != first.name]
    first_url = None if first_src is None else str(first_src)
    if first_src is None:
        raise _unavailable(model_id, first, None, "no download address is known", others)
    hf = hf or any(isinstance(src, HFFile) for _, src in candidates)
    if offline(hf=hf):
        var = "TSALLIS_OFFLINE/HF_HUB_OFFLINE" if hf else "TSALLIS_OFFLINE"
        raise _unavailable(model_id, first, first_url, f"downloads are off: {var} is set", others)
    errors = []
    for dest, src in candidates:
        if src is None:
            continue
        try:
            if isinstance(src, HFFile):
                _hf_download(src, Path(dest), timeout=timeout, progress=progress)
            else:
                _url_download(src, Path(dest), sha256=sha256, timeout=timeout, progress=progress)
            return Path(dest)
        except _NotFound as e:
            errors.append(str(e))
        except (OSError, ValueError, RuntimeError) as e:
            raise _unavailable(model_id, first, first_url, _reason(e), others) from None
    raise _unavailable(model_id, first, first_url, "; ".join(errors), others)


class _NotFound(OSError):
    pass


def _reason(e: BaseException) -> str:
    """One line: the error's class and the first line of its message (library errors run over several)."""
    reason = getattr(e, "reason", None) or e
    lines = str(reason).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200] if lines else ''}".rstrip(": ")


_TIMEOUT_LOCK = threading.Lock()


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Sockets opened in the block time out after ``seconds`` per operation (``download_url_to_file`` takes no
    timeout of its own); one download at a time sets it, and the previous default comes back after."""
    with _TIMEOUT_LOCK:
        before = socket.getdefaulttimeout()
        socket.setdefaulttimeout(seconds)
        try:
            yield
        finally:
            socket.setdefaulttimeout(before)


def _url_download(url: str, dest: Path, *, sha256: str | None, timeout: float, progress: bool) -> None:
    """``torch.hub.download_url_to_file``: a temporary ``.partial`` file renamed into place once complete, checked
    against the sha256 (or its OpenMMLab 8-hex prefix) when one is known."""
    from urllib.error import HTTPError

    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _socket_timeout(timeout):
            torch.hub.download_url_to_file(url, str(dest), hash_prefix=sha256.lower() if sha256 else None,
                                           progress=progress)
    except HTTPError as e:
        if e.code == 404:
            raise _NotFound(f"HTTP 404 for {url}") from None
        raise
    except RuntimeError as e:
        if "invalid hash value" in str(e):
            raise ValueError(f"checksum mismatch for {url}: expected sha256 {sha256[:16]}…") from None
        raise


def _hf_download(src: HFFile, dest: Path, *, timeout: float, progress: bool) -> None:
    """``huggingface_hub.hf_hub_download`` into ``dest``'s folder (its own ``.incomplete`` file and rename), then
    the file's sha256 checked against the Hub's (the etag of an LFS file; looked up first)."""
    import httpx
    import huggingface_hub as hh
    from huggingface_hub.errors import RemoteEntryNotFoundError
    from tqdm.auto import tqdm

    class Silent(tqdm):  # progress=False: the library's bar, turned off
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "disable": True})

    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        meta = hh.get_hf_file_metadata(hh.hf_hub_url(src.repo, src.filename, revision=src.revision), timeout=timeout)
        path = Path(hh.hf_hub_download(src.repo, src.filename, revision=src.revision, local_dir=dest.parent,
                                       etag_timeout=timeout, tqdm_class=None if progress else Silent))
    except RemoteEntryNotFoundError:
        raise _NotFound(f"no {src.filename} in huggingface.co/{src.repo}") from None
    except httpx.HTTPError as e:  # the client's network errors are not OSErrors
        raise OSError(_reason(e)) from None
    expected = (meta.etag or "").strip('" ').lower()
    if re.fullmatch(r"[0-9a-f]{64}", expected) and sha256_of(path) != expected:
        path.unlink(missing_ok=True)
        raise ValueError(f"checksum mismatch for {src}: expected sha256 {expected[:16]}…")
    if path.resolve() != dest.resolve():
        shutil.move(str(path), str(dest))


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
