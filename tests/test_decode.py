"""Issue 15, item 4: decoding an upload is bounded in time and memory for every format and every frame, and a
decode bomb does not hold up another user's run.

The corpus is built here: a progressive JPEG with 5,000 scans (the 30-48 s case), an ICO whose directory says
256×256 around a 8900×8900 PNG, an ICO whose BMP header lies, a TIFF whose second page is over the pixel limit,
a GIF with many frames, a PNG whose header is over the limit, a truncated progressive JPEG.  Each goes to the
served app as an upload; a second user runs an attack meanwhile.
"""

from __future__ import annotations

import io
import struct
import threading
import time

import pytest
from PIL import Image
from served import Served, raw_call

from app.decode import jpeg_scans, precheck, sandbox_decode
from attack_engine.images import ImageError

MAX_PIXELS = 4_000_000


def _segments(data: bytes) -> list[tuple[int, bytes]]:
    """A baseline/progressive JPEG's marker segments (scans with their entropy-coded data)."""
    i, out = 2, []
    while i < len(data):
        m = data[i + 1]
        if m == 0xD9:
            break
        (n,) = struct.unpack(">H", data[i + 2:i + 4])
        j = i + 2 + n
        if m == 0xDA:
            while not (data[j] == 0xFF and data[j + 1] != 0 and not 0xD0 <= data[j + 1] <= 0xD7):
                j += 1
        out.append((m, data[i:j]))
        i = j
    return out


def progressive_bomb(side: int, repeats: int) -> bytes:
    """A flat progressive JPEG with its last scan repeated: tiny file, every scan walks the whole image."""
    b = io.BytesIO()
    Image.new("RGB", (side, side), (120, 80, 40)).save(b, "JPEG", progressive=True, quality=90)
    segs = _segments(b.getvalue())
    scans = [s for m, s in segs if m == 0xDA]
    return b"\xff\xd8" + b"".join(s for _, s in segs) + scans[-1] * repeats + b"\xff\xd9"


def _png(img: Image.Image) -> bytes:
    b = io.BytesIO()
    img.save(b, "PNG", compress_level=9)
    return b.getvalue()


def ico_around(blob: bytes, said: int = 0) -> bytes:
    """A one-entry ICO whose directory says ``said`` (0 = 256) around ``blob``."""
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", said, said, 0, 0, 1, 32, len(blob), 22) + blob


def corpus() -> dict[str, bytes]:
    out = {"jpeg, 5000 scans": progressive_bomb(1984, 5000)}
    out["ico 256 around 8900x8900 png"] = ico_around(_png(Image.new("L", (8900, 8900))))
    dib = struct.pack("<IiiHHIIiiII", 40, 6000, 12000, 1, 32, 0, 0, 0, 0, 0, 0) + bytes(64)
    out["ico 32 around a 6000x6000 bmp header"] = ico_around(dib, said=32)
    b = io.BytesIO()
    Image.new("RGB", (64, 64)).save(b, "TIFF", save_all=True, compression="tiff_deflate",
                                    append_images=[Image.new("L", (3000, 3000))])
    out["tiff, page 2 3000x3000"] = b.getvalue()
    b = io.BytesIO()
    frames = [Image.new("P", (16, 16), k % 200) for k in range(1500)]
    frames[0].save(b, "GIF", save_all=True, append_images=frames[1:], duration=10)
    out["gif, 1500 frames"] = b.getvalue()
    png = bytearray(_png(Image.new("L", (16, 16))))
    png[16:24] = struct.pack(">II", 20000, 20000)  # IHDR says 400 MP (CRC now wrong too)
    out["png header 20000x20000"] = bytes(png)
    out["progressive jpeg, truncated"] = progressive_bomb(1024, 3)[:3000]
    return out


def test_structural_checks_refuse_the_bombs_in_microseconds():
    bomb = progressive_bomb(512, 5000)
    assert jpeg_scans(bomb) == 5000 + 10 or jpeg_scans(bomb) > 5000
    b = io.BytesIO()
    Image.new("RGB", (300, 200), (1, 2, 3)).save(b, "JPEG", progressive=True)
    assert 1 < jpeg_scans(b.getvalue()) <= 12, "an ordinary progressive JPEG passes"
    precheck(b.getvalue(), MAX_PIXELS)
    t0 = time.perf_counter()
    with pytest.raises(ImageError, match=r"5,0\d\d scans"):
        precheck(bomb, MAX_PIXELS)
    with pytest.raises(ImageError, match="says 256×256 but holds a 3000×3000"):
        precheck(ico_around(_png(Image.new("L", (3000, 3000)))), MAX_PIXELS)
    assert time.perf_counter() - t0 < 0.5


def test_sandbox_bounds_time_and_memory():
    bomb = progressive_bomb(1984, 800)  # under no structural check's radar if the scan limit were off
    t0 = time.perf_counter()
    reason = sandbox_decode(bomb, MAX_PIXELS, 1024, timeout_s=1.0, mem_bytes=2**30)
    dt = time.perf_counter() - t0
    assert reason is not None and "longer than 1 s" in reason, reason
    assert dt < 2.0, dt
    big = _png(Image.new("RGBA", (5000, 5000), (1, 2, 3, 4)))  # 100 MB decoded
    assert sandbox_decode(big, 10**8, 8192, 10.0, 2**30) is None, "decodes with room"
    assert "memory" in (sandbox_decode(big, 10**8, 8192, 10.0, 100 * 2**20) or ""), "refused in 100 MB"
    b = io.BytesIO()
    Image.new("RGB", (640, 480), (9, 9, 9)).save(b, "JPEG")
    assert sandbox_decode(b.getvalue(), MAX_PIXELS, 1024, 2.0, 2**30) is None


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Served(tmp_path_factory.mktemp("decode"), {"TSALLIS_HOSTED": "1", "TSALLIS_MODELS": "standin-tiny",
                                                    "TSALLIS_MAX_PIXELS": str(MAX_PIXELS),
                                                    "TSALLIS_ATTACK_CONCURRENCY": "1"})
    yield s
    s.stop()


def _upload(url: str, name: str, data: bytes) -> dict:
    import httpx

    path = httpx.post(url + "gradio_api/upload", files={"files": (name, data, "application/octet-stream")},
                      timeout=30).json()[0]
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": name}


def _user_run(url: str, steps: int) -> float:
    t0 = time.perf_counter()
    ev, data = raw_call(url, "run", [None, None, "synthetic", "standin-tiny", "tsallis", "pgd", 8, steps, 0, 1,
                                     "linear:-2:1"], timeout=120)
    assert ev == "complete", data[:300]
    return time.perf_counter() - t0


def test_bombs_are_refused_quickly_and_others_runs_continue(srv, report_figure):
    files = {name: _upload(srv.url, f"f{k}.bin", data) for k, (name, data) in enumerate(corpus().items())}
    steps = 25
    _user_run(srv.url, 2)  # warm-up
    alone = min(_user_run(srv.url, steps) for _ in range(2))
    times: dict[str, float] = {}
    outcomes: dict[str, str] = {}
    during: list[float] = []

    def other_user() -> None:
        during.append(_user_run(srv.url, steps))

    t = threading.Thread(target=other_user)
    t.start()
    for name, fd in files.items():
        t0 = time.perf_counter()
        ev, _ = raw_call(srv.url, "step", [fd, None, "", "standin-tiny", "ce", "pgd", 8, 2, 0, 0, ""], timeout=60)
        times[name] = time.perf_counter() - t0
        outcomes[name] = "refused" if ev == "error" else "decoded"
    t.join(timeout=120)
    assert during, "the other user's run finished"
    rss = srv.rss_mb()
    for name in ("jpeg, 5000 scans", "ico 256 around 8900x8900 png", "ico 32 around a 6000x6000 bmp header",
                 "tiff, page 2 3000x3000", "png header 20000x20000", "progressive jpeg, truncated"):
        assert outcomes[name] == "refused", (name, outcomes[name])
    worst = max(times, key=times.get)
    assert times[worst] <= 2.0 + 1.0, f"{worst} took {times[worst]:.2f} s (2 s decode limit + request overhead)"
    assert during[0] < alone + 6.0, f"the other user's run took {during[0]:.1f} s (alone {alone:.1f} s)"
    assert raw_call(srv.url, "step", [None, None, "synthetic", "standin-tiny", "ce", "pgd", 8, 2, 0, 0, ""])[0] \
        == "complete"
    report_figure(f"decode: {len(files)} bomb files ({sum(v == 'refused' for v in outcomes.values())} refused); "
                  f"worst request '{worst}' {times[worst]:.2f} s; another user's {steps}-step run took "
                  f"{during[0]:.2f} s meanwhile vs {alone:.2f} s alone; server RSS afterwards {rss:.0f} MB")
