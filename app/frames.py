"""The frame cache: panel images encoded once (JPEG) under content-hash names, written atomically."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

from app.disk import app_root


class FrameStore:
    """Encodes panel images once, under content-hash names, written atomically.

    Handing Gradio a finished file (instead of a PIL image) means an identical panel rendered again (scrubbing
    back, replay, two sessions on one example) is never rewritten while a browser is still downloading it, and
    lets us pick the JPEG quality.  Gradio copies each file into its own cache; ours are pruned after a while.
    """

    def __init__(self, quality: int = 82, keep_s: float = 600.0) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="frames_", dir=app_root()))
        self.quality = quality
        self.keep_s = keep_s
        self._writes = 0
        self._lock = threading.Lock()

    def put(self, img: Image.Image) -> str:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG", quality=self.quality)
        data = buf.getvalue()
        path = self.dir / f"{hashlib.sha1(data).hexdigest()}.jpeg"
        # a file handed out again is touched, so neither prune() nor the disk budget (app.disk) deletes it
        with self._lock:
            try:
                os.utime(path)
            except FileNotFoundError:
                tmp = path.with_suffix(f".{threading.get_ident()}.part")
                tmp.write_bytes(data)
                os.replace(tmp, path)
            self._writes += 1
            prune = self._writes % 500 == 0
        if prune:
            self.prune()
        return str(path)

    def prune(self) -> None:
        """Delete the files not handed out for ``keep_s`` seconds."""
        with self._lock:
            cutoff = time.time() - self.keep_s
            for p in self.dir.glob("*.jpeg"):
                try:
                    if p.stat().st_mtime < cutoff:
                        p.unlink()
                except OSError:
                    pass
