"""The app's disk use under one budget (``TSALLIS_DISK_MB``): Gradio's file cache (``GRADIO_TEMP_DIR``, which
holds uploads and every file sent to a browser), the encoded panels and the exports.

* :func:`app_root` is one folder per process under ``<temp>/tsallis_app/``, and :func:`own_gradio_cache` (called
  by ``build_demo``) puts Gradio's cache there too (unless ``GRADIO_TEMP_DIR`` is set): in the shared
  ``<temp>/gradio`` a copy is named by its content hash, and another Gradio app closing deletes the same path; :func:`clean_at_start` removes the folders of
  processes that are gone and, in an operator-chosen ``GRADIO_TEMP_DIR``, the files older than this process
  (nothing in them is reachable after a restart: sessions do not survive one).
* :meth:`DiskBudget.enforce` deletes files older than their keep time, then the oldest files until the folders
  are back under 80 % of the budget when they exceed it (files younger than ``min_age_s`` are in use and stay:
  under a burst the budget can be passed by what a minute writes).
* :meth:`DiskBudget.drop_session` deletes one session's exports when the session expires.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT_NAME = "tsallis_app"
STARTED = time.time()


def gradio_cache_dir() -> Path | None:
    """Gradio's file cache when the app owns it (``GRADIO_TEMP_DIR`` is set: by :func:`own_gradio_cache` or the
    operator), else None: the shared ``<temp>/gradio`` of other Gradio apps on the machine is never touched."""
    d = os.environ.get("GRADIO_TEMP_DIR")
    return Path(d) if d else None


def own_gradio_cache() -> Path:
    """Point Gradio's cache at a folder of this process (``<temp>/tsallis_app/<pid>/gradio``) unless the operator
    chose one; call before the app is built (``build_demo`` does).  It sets the process's environment once, so
    every Blocks built and served later in the process agrees on the folder (Gradio reads it when a component is
    made and when the server starts)."""
    if not os.environ.get("GRADIO_TEMP_DIR"):
        os.environ["GRADIO_TEMP_DIR"] = str(app_root() / "gradio")
    return Path(os.environ["GRADIO_TEMP_DIR"])


def app_root() -> Path:
    """This process's folder for panels and exports (created on first use)."""
    d = Path(tempfile.gettempdir()) / ROOT_NAME / f"{os.getpid()}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_at_start(gradio_dir: Path | None = None) -> dict[str, int]:
    """Remove what earlier processes left: their app folders, and Gradio cache files older than this process."""
    removed = {"app_folders": 0, "gradio_files": 0}
    parent = Path(tempfile.gettempdir()) / ROOT_NAME
    if parent.is_dir():
        for d in parent.iterdir():
            if d.name.isdigit() and int(d.name) != os.getpid() and not _alive(int(d.name)):
                shutil.rmtree(d, ignore_errors=True)
                removed["app_folders"] += 1
    for legacy in Path(tempfile.gettempdir()).glob("tsallis_frames_*"):  # folders of versions before this one
        shutil.rmtree(legacy, ignore_errors=True)
    for legacy in Path(tempfile.gettempdir()).glob("tsallis_export_*"):
        shutil.rmtree(legacy, ignore_errors=True)
    g = gradio_dir or gradio_cache_dir()
    if g is not None and g.is_dir():
        for f, st in _files(g):
            if st.st_ctime < STARTED - 5:  # ctime: a copy keeps its mtime, never its ctime
                _unlink(f)
                removed["gradio_files"] += 1
        _prune_empty(g, 0.0)
    return removed


def _files(root: Path) -> list[tuple[Path, os.stat_result]]:
    out = []
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            with contextlib.suppress(OSError):
                out.append((p, p.lstat()))
    return out


def _unlink(p: Path) -> int:
    try:
        n = p.lstat().st_blocks * 512
        p.unlink()
        return n
    except OSError:
        return 0


def _prune_empty(root: Path, min_age_s: float = 60.0) -> None:
    """Remove empty folders under ``root`` older than ``min_age_s`` (a new one is about to be written to)."""
    now = time.time()
    for dirpath, dirs, names in os.walk(root, topdown=False):
        if dirpath == str(root) or dirs or names:
            continue
        with contextlib.suppress(OSError):
            if now - os.stat(dirpath).st_mtime >= min_age_s:
                os.rmdir(dirpath)


def usage(folders: list[Path]) -> tuple[int, int]:
    """(bytes on disk, files) under ``folders``."""
    size = count = 0
    for root in folders:
        if root.is_dir():
            for _, st in _files(root):
                size += st.st_blocks * 512
                count += 1
    return size, count


@dataclass
class DiskBudget:
    """The folders the app writes to and their budget in bytes; ``keep_s`` is the age after which a file goes."""

    folders: list[Path]  # the app's own folders: files go after keep_s, or oldest first over budget
    budget_bytes: int
    keep_s: float = 3600.0
    exports: Path | None = None
    shared: tuple[Path, ...] = ()  # Gradio's cache: counted, oldest first over budget, never by age (Gradio's own
    # delete_cache does that); files it holds from before protect_before (set when the Blocks are built: the
    # gallery's copies) are kept
    protect_before: float = 0.0
    min_age_s: float = 60.0  # younger files are in use (an upload waiting in the queue for its run): never deleted

    def _candidates(self) -> tuple[list, int]:
        now, aged, files = time.time(), 0, []
        for root in self.folders:
            for p, st in _files(root) if root.is_dir() else []:
                if now - st.st_ctime > self.keep_s:
                    _unlink(p)
                    aged += 1
                else:
                    files.append((p, st))
        for root in self.shared:
            files += [(p, st) for p, st in (_files(root) if root.is_dir() else []) if st.st_ctime >= self.protect_before]
        return files, aged

    def used(self) -> int:
        return usage([*self.folders, *self.shared])[0]

    def enforce(self) -> dict[str, int]:
        """Delete the app's files older than ``keep_s``, then the oldest files while over budget (to 80 %)."""
        keep, aged = self._candidates()
        freed = by_budget = 0
        used = self.used()
        if used > self.budget_bytes:
            now = time.time()
            for p, st in sorted(keep, key=lambda x: x[1].st_ctime):
                if used <= 0.8 * self.budget_bytes or now - st.st_ctime < self.min_age_s:
                    break
                n = _unlink(p)
                used -= st.st_blocks * 512
                freed += n
                by_budget += 1
        for root in [*self.folders, *self.shared]:
            if root.is_dir():
                _prune_empty(root, self.min_age_s)
        return {"aged": aged, "over_budget": by_budget, "freed_bytes": freed, "used_bytes": max(used, 0)}

    def session_dir(self, session_id: str) -> Path:
        """A fresh folder for one export of ``session_id``."""
        assert self.exports is not None
        self.exports.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{session_id}_", dir=self.exports))

    def drop_session(self, session_id: str) -> int:
        """Delete the exports of an expired session; returns how many folders went."""
        if self.exports is None or not self.exports.is_dir():
            return 0
        gone = 0
        for d in self.exports.glob(f"{session_id}_*"):
            shutil.rmtree(d, ignore_errors=True)
            gone += 1
        return gone
