"""Uploads are decoded first in a throw-away process with a time and memory limit, so no file can hold the
server's CPU or memory (decode bombs), then read for real by :func:`attack_engine.images.read_image`.

:func:`check_upload` (called for every uploaded image and mask before it is read):

1. :func:`precheck`, structural checks that cost microseconds: a JPEG with more than :data:`MAX_JPEG_SCANS`
   scans (a progressive JPEG decodes every scan over the whole image: 5,000 tiny scans take half a minute), an
   ICO whose embedded PNG / BMP is larger than the limit or than its directory says;
2. a child process (``python -I``, Pillow only) opens the file, seeks every frame and checks its real size, and
   decodes the first frame as the app will (JPEG at reduced scale), under ``RLIMIT_AS`` =
   ``TSALLIS_DECODE_MB`` and a wall-clock limit of ``TSALLIS_DECODE_S``; Pillow's decompression-bomb warning is
   an error there.  A file that takes longer or needs more is refused, and the child is killed.  A file that is
   merely unreadable (not an image, truncated) failed as fast in the child, so :func:`read_image` gives its
   usual message.

Verdicts are cached by content hash (an upload is checked once however often it is run).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import threading
from collections import OrderedDict
from pathlib import Path

from app.limits import Limits
from attack_engine.images import ImageError

MAX_JPEG_SCANS = 64  # real progressive JPEGs have about 10 (mozjpeg: up to ~20)
MAX_FRAMES = 10_000  # frames whose size the sandbox checks
_CACHE_SIZE = 256

CHILD = r"""
import io, json, resource, sys, warnings
mem, max_pixels, max_side, max_frames = (int(v) for v in sys.argv[1:5])
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
from PIL import Image
Image.MAX_IMAGE_PIXELS = max_pixels
warnings.simplefilter("error", Image.DecompressionBombWarning)
def answer(**kw):
    sys.stdout.write(json.dumps(kw)); sys.stdout.flush(); sys.exit(0)
try:
    im = Image.open(io.BytesIO(sys.stdin.buffer.read()))
    n = int(getattr(im, "n_frames", 1) or 1)
    if n > max_frames:
        answer(error=f"has {n} frames; at most {max_frames} are read")
    for k in range(n if n > 1 else 0):
        im.seek(k)
        w, h = im.size
        if w * h > max_pixels:
            answer(error=f"frame {k + 1} is {w}x{h}; the limit is {max_pixels:,} pixels")
    if n > 1:
        im.seek(0)
    if im.format == "JPEG" and max(im.size) > max_side:
        im.draft(im.mode, (max_side, max_side))
    im.load()
    w, h = im.size
    if w * h > max_pixels:
        answer(error=f"decodes to {w}x{h}; the limit is {max_pixels:,} pixels")
    answer(ok=True)
except MemoryError:
    answer(error="needs more memory to decode than an upload may use")
except (Image.DecompressionBombError, Image.DecompressionBombWarning):
    answer(error=f"is too large: the limit is {max_pixels:,} pixels")
except Exception as e:  # an ordinary unreadable file: read_image says what is wrong (it fails as fast)
    answer(ok=True, unreadable=type(e).__name__)
"""


# -- structural checks ---------------------------------------------------------------------------------------
def jpeg_scans(data: bytes) -> int:
    """Number of scans (SOS segments) in a JPEG, walking its markers (entropy-coded data skipped by search)."""
    i, n, size = 2, 0, len(data)
    while i + 4 <= size:
        if data[i] != 0xFF:
            i = data.find(b"\xff", i)
            if i < 0:
                break
            continue
        m = data[i + 1]
        if m == 0xFF:  # fill byte
            i += 1
            continue
        if m in (0xD8, 0x01) or 0xD0 <= m <= 0xD7:
            i += 2
            continue
        if m == 0xD9:
            break
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        i += 2 + length
        if m == 0xDA:
            n += 1
            while True:  # entropy-coded data up to the next marker (not a stuffed 0xFF00 or a restart marker)
                i = data.find(b"\xff", i)
                if i < 0 or i + 1 >= size:
                    return n
                nxt = data[i + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                    i += 1 if nxt == 0xFF else 2
                    continue
                break
    return n


def _embedded_size(blob: bytes) -> tuple[int, int] | None:
    """(w, h) of a PNG (IHDR) or a BMP DIB header (height halved: image + AND mask) inside an ICO."""
    if blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) >= 24:
        return struct.unpack(">II", blob[16:24])
    if len(blob) >= 12:
        (hdr,) = struct.unpack("<I", blob[:4])
        if hdr >= 12:
            w, h = struct.unpack("<ii", blob[4:12]) if hdr >= 40 else struct.unpack("<hh", blob[4:8])
            return abs(w), abs(h) // 2
    return None


def ico_frames(data: bytes) -> list[tuple[tuple[int, int], tuple[int, int] | None]]:
    """[(size the directory says, real size of the embedded image)] for each entry of an ICO / CUR."""
    (count,) = struct.unpack("<H", data[4:6])
    out = []
    for k in range(min(count, 256)):
        e = data[6 + 16 * k: 22 + 16 * k]
        if len(e) < 16:
            break
        w, h = e[0] or 256, e[1] or 256
        size, offset = struct.unpack("<II", e[8:16])
        out.append(((w, h), _embedded_size(data[offset:offset + min(size, 64)])))
    return out


def precheck(data: bytes, max_pixels: int) -> None:
    """Refuse (ImageError, the message a predicate: "is a JPEG with ...") the decode bombs recognisable from
    their structure alone."""
    if data[:3] == b"\xff\xd8\xff":
        n = jpeg_scans(data)
        if n > MAX_JPEG_SCANS:
            raise ImageError(f"is a JPEG with {n:,} scans (at most {MAX_JPEG_SCANS} are decoded)")
    elif data[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and len(data) >= 6:
        for said, real in ico_frames(data):
            if real is None:
                continue
            if real[0] * real[1] > max_pixels or real[0] > 4 * max(said) or real[1] > 4 * max(said):
                raise ImageError(f"is an icon that says {said[0]}×{said[1]} but holds a {real[0]}×{real[1]} image")


# -- the sandbox -----------------------------------------------------------------------------------------------
def sandbox_decode(data: bytes, max_pixels: int, max_side: int, timeout_s: float, mem_bytes: int) -> str | None:
    """Decode in a child process; None when it decoded within the limits, else the reason it did not."""
    env = {"PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1", "LC_ALL": "C"}
    proc = subprocess.Popen([sys.executable, "-I", "-c", CHILD, str(mem_bytes), str(max_pixels), str(max_side),
                             str(MAX_FRAMES)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        out, _ = proc.communicate(data, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return f"takes longer than {timeout_s:g} s to decode"
    try:
        verdict = json.loads(out.decode() or "{}")
    except ValueError:
        verdict = {}
    if verdict.get("ok"):
        return None
    return verdict.get("error") or "needs more memory to decode than an upload may use"


class UploadChecker:
    """:func:`precheck` + :func:`sandbox_decode` with a verdict cache (by content hash)."""

    def __init__(self) -> None:
        self._cache: OrderedDict[str, str | None] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, src: str | Path | bytes, max_pixels: int, max_side: int, timeout_s: float = 2.0,
              mem_bytes: int = 2**30) -> None:
        """Raise ImageError when ``src`` (a file or its bytes) must not be decoded in the server."""
        if isinstance(src, (str, Path)):
            try:
                data = Path(src).read_bytes()
            except OSError:
                return  # read_image gives the message (missing file, folder, ...)
        elif isinstance(src, (bytes, bytearray)):
            data = bytes(src)
        else:
            return  # arrays and PIL images are decoded already
        key = hashlib.sha256(data).hexdigest() + f":{max_pixels}:{max_side}"
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                reason = self._cache[key]
                if reason is None:
                    return
                raise ImageError(f"the file {reason}")
        try:
            precheck(data, max_pixels)
            reason = sandbox_decode(data, max_pixels, max_side, timeout_s, mem_bytes)
        except ImageError as e:
            reason = str(e)
        with self._lock:
            self._cache[key] = reason
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        if reason is not None:
            raise ImageError(f"the file {reason}")


CHECKER = UploadChecker()


def check_upload(src: object, limits: Limits) -> None:
    """The process-wide :class:`UploadChecker` with the app's limits (arrays and PIL images pass: they are
    decoded already)."""
    if isinstance(src, (str, Path, bytes, bytearray)):
        CHECKER.check(src, limits.max_pixels, limits.max_side, limits.decode_s, int(limits.decode_mb * 2**20))
