"""A corpus of bad (and awkward) inputs, generated here, sent through the API (``gradio_client`` and raw HTTP for
NaN/inf, which JSON clients cannot send) and a few through the browser.

Every case must get exactly one readable message (an error for refusals, a note in the status line for inputs
that are converted), must leave the session's recorded run unchanged when refused, and the next normal request
must work.  The app runs with the stand-in model and small limits so the corpus takes seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _kit import free_port
from PIL import Image

import app  # offline environment before gradio; also used below

SMALL = dict(max_pixels=4_000_000, max_side=256, max_steps=50, time_limit_s=60.0, max_upload_mb=2.0)


# -- the corpus ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    kind: str  # "image" (upload), "mask" (upload with a good image), "param" (example + changed controls)
    payload: Any  # a file path, or a dict of control overrides
    expect: str  # a fragment of the one message
    ok: bool = False  # True: accepted and converted (the note is in the status line)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def bomb_png(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims ``w×h`` pixels (a decompression bomb is refused from the header alone)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _save(im: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    im.save(path, fmt, **kw)
    return path


def make_corpus(folder: Path, good: Path, good_hw: tuple[int, int]) -> list[Case]:
    """Write every bad file into ``folder``; ``good`` is a valid image of size ``good_hw`` for the mask cases."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8))
    png = io.BytesIO()
    rgb.save(png, "PNG")
    png = png.getvalue()
    jpg = io.BytesIO()
    rgb.save(jpg, "JPEG", quality=90)
    jpg = jpg.getvalue()
    f = folder
    (f / "truncated.png").write_bytes(png[: len(png) // 2])
    (f / "truncated.jpg").write_bytes(jpg[: len(jpg) // 3])
    corrupt = bytearray(png)
    i = png.index(b"IDAT") + 20
    corrupt[i : i + 40] = bytes(40)
    (f / "corrupt.png").write_bytes(bytes(corrupt))
    (f / "text.png").write_text("this is not an image\n" * 20)
    (f / "empty.png").write_bytes(b"")
    (f / "html.jpg").write_text("<html><body><img src=x onerror=alert(1)></body></html>")
    (f / "svg.png").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    (f / "bomb.png").write_bytes(bomb_png(30_000, 30_000))
    (f / "random.png").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    _save(Image.new("L", (2500, 2000), 90), f / "too_many_pixels.png")  # 5 MP > 4 MP
    _save(Image.new("RGB", (1200, 900), (200, 120, 40)), f / "large.jpg", quality=80)  # downscaled to 256
    _save(Image.new("RGB", (1, 1), (255, 0, 0)), f / "one_pixel.png")
    _save(Image.new("RGB", (400, 10), (0, 90, 0)), f / "elongated.png")
    _save(rgb.convert("L"), f / "gray.png")
    _save(rgb.convert("RGBA"), f / "rgba.png")
    _save(rgb.convert("P"), f / "palette.png")
    _save(Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16)), f / "sixteen_bit.png")
    _save(rgb.convert("CMYK"), f / "cmyk.jpg", quality=90)
    exif = rgb.getexif()
    exif[0x0112] = 6  # rotate 90°
    _save(rgb, f / "exif_rotated.jpg", quality=90, exif=exif.tobytes())
    frames = [rgb.convert("P"), rgb.rotate(180).convert("P"), rgb.transpose(Image.FLIP_LEFT_RIGHT).convert("P")]
    frames[0].save(f / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    _save(Image.fromarray(np.full((32, 32), np.nan, np.float32)), f / "nan.tiff")
    # masks for `good` (2 classes, ignore 255)
    gh, gw = good_hw
    _save(Image.fromarray(np.zeros((gh // 2, gw // 2), np.uint8)), f / "mask_small.png")
    m = np.zeros((gh, gw), np.uint8)
    m[: gh // 2] = 7
    _save(Image.fromarray(m), f / "mask_unknown_ids.png")
    _save(Image.fromarray((rng.random((gh, gw, 3)) * 255).astype(np.uint8)), f / "mask_colours.png")
    _save(Image.fromarray(np.full((gh, gw), 255, np.uint8)), f / "mask_all_ignored.png")
    (f / "mask_text.png").write_text("no mask here")
    (f / "mask.txt").write_text("0 1 0 1")
    _save(Image.fromarray(np.zeros((gh, gw), np.uint8)), f / "mask_gif.gif")

    cases = [
        Case("truncated PNG", "image", f / "truncated.png", "truncated or corrupt"),
        Case("truncated JPEG", "image", f / "truncated.jpg", "truncated or corrupt"),
        Case("corrupt PNG data", "image", f / "corrupt.png", "truncated or corrupt"),
        Case("text file named .png", "image", f / "text.png", "not a readable image"),
        Case("empty file", "image", f / "empty.png", "not a readable image"),
        Case("HTML named .jpg", "image", f / "html.jpg", "not a readable image"),
        Case("SVG named .png", "image", f / "svg.png", "not a readable image"),
        Case("random bytes", "image", f / "random.png", "not a readable image"),
        Case("decompression bomb (30000² header)", "image", f / "bomb.png", "too large"),
        Case("more pixels than the limit", "image", f / "too_many_pixels.png", "the limit is 4,000,000"),
        Case("1×1 image", "image", f / "one_pixel.png", "at least 8 pixels"),
        Case("40:1 image", "image", f / "elongated.png", "at most 20×"),
        Case("float TIFF of NaN", "image", f / "nan.tiff", "NaN or inf"),
        Case("large photo", "image", f / "large.jpg", "downscaled from 1200×900 to 256×192", ok=True),
        Case("grayscale", "image", f / "gray.png", "grayscale converted to RGB", ok=True),
        Case("RGBA", "image", f / "rgba.png", "transparency flattened", ok=True),
        Case("palette", "image", f / "palette.png", "palette image converted", ok=True),
        Case("16-bit", "image", f / "sixteen_bit.png", "stretched to 8 bits", ok=True),
        Case("CMYK JPEG", "image", f / "cmyk.jpg", "CMYK converted", ok=True),
        Case("EXIF-rotated JPEG", "image", f / "exif_rotated.jpg", "EXIF orientation", ok=True),
        Case("animated GIF", "image", f / "animated.gif", "first of 3 frames", ok=True),
        Case("mask of another size", "mask", f / "mask_small.png", f"but the image is {gw}×{gh}"),
        Case("mask with unknown class ids", "mask", f / "mask_unknown_ids.png", "class ids [7] outside 0..1"),
        Case("mask in colours", "mask", f / "mask_colours.png", "not colours"),
        Case("mask with no labelled pixel", "mask", f / "mask_all_ignored.png", "no labelled pixel"),
        Case("mask that is text", "mask", f / "mask_text.png", "mask: not a readable image"),
        Case("mask with a .txt name", "mask", f / "mask.txt", "Invalid file type"),
        Case("mask as GIF", "mask", f / "mask_gif.gif", "Invalid file type"),
        Case("ε far too large", "param", {"eps": 1e9}, "ε (/255) must be between 0.5 and 32"),
        Case("ε negative", "param", {"eps": -1}, "ε (/255) must be between"),
        Case("ε not a number", "param", {"eps": "eight"}, "ε (/255) must be a number"),
        Case("steps zero", "param", {"steps": 0}, "Steps must be between 1 and 50"),
        Case("steps absurd", "param", {"steps": 10**12}, "Steps must be between 1 and 50"),
        Case("steps fractional", "param", {"steps": 2.5}, "Steps must be a whole number"),
        Case("step size huge", "param", {"alpha": 1e6}, "PGD step size (/255, 0 = ε/4) must be between 0 and 16"),
        Case("step size negative", "param", {"alpha": -2}, "must be between 0 and 16"),
        Case("seed negative", "param", {"seed": -5}, "Seed must be between"),
        Case("seed huge", "param", {"seed": 1e30}, "Seed must be between"),
        Case("schedule with nan", "param", {"sched": "linear:-2:nan"}, "must be finite"),
        Case("schedule with inf", "param", {"sched": "points:0:-2,1:inf"}, "must be finite"),
        Case("schedule descending points", "param", {"sched": "points:1:0,0:1"}, "ascending"),
        Case("schedule missing value", "param", {"sched": "cosine:1"}, "takes 2 value(s)"),
        Case("schedule unknown kind", "param", {"sched": "zigzag:1:2"}, "unknown kind"),
        Case("schedule q huge", "param", {"sched": "const:1e6"}, "q must stay within [-10, 3]"),
        Case("schedule p* near 1", "param", {"sched": "plinear:0.99999:0.1"}, "q must stay within"),
        Case("schedule text 5000 chars", "param", {"sched": "linear:-2:1" + " " * 5000}, "at most 300 are accepted"),
        Case("unknown attack", "param", {"attack": "fgsm"}, "not in the list of choices"),
        Case("model id that is a path", "param", {"model": "../../etc/passwd"}, "not in the list of choices"),
        Case("example id that is a path", "param", {"ex": "../../../etc/passwd"}, "unknown example"),
        Case("no image at all", "param", {"ex": ""}, "pick an example or upload an image"),
    ]
    return cases


RAW_CASES = [  # (name, JSON text of the changed control, position in /step's data, message fragment)
    ("ε NaN", "NaN", 6, "ε (/255) must be a finite number"),
    ("ε inf", "Infinity", 6, "ε (/255) must be"),
    ("steps -inf", "-Infinity", 7, "Steps must be"),
    ("steps NaN", "NaN", 7, "Steps must be a finite number"),
    ("step size NaN", "NaN", 8, "PGD step size (/255, 0 = ε/4) must be a finite number"),
    ("seed NaN", "NaN", 9, "Seed must be a finite number"),
    ("seed inf", "Infinity", 9, "Seed must be"),
    ("image is a server path", '{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}', 0,
     "not uploaded by a user"),
    ("image path traversal", '{"path": "../../../../etc/shadow", "meta": {"_type": "gradio.FileData"}}', 0,
     "not uploaded by a user"),
]


# -- server ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from app.launch import build_demo, launch_kwargs
    from app.limits import Limits
    from app.sources import ExampleItem
    from app.standin import register_standin, write_synthetic_example

    folder = tmp_path_factory.mktemp("bad_input")
    mid = register_standin()
    ip, mp = write_synthetic_example(folder, 64)
    lim = Limits(**SMALL)
    demo = build_demo(mid, [ExampleItem("synthetic", "Synthetic disc (with mask)", ip, {2: mp})], folder / "none",
                      limits=lim)
    port = free_port()
    kw = launch_kwargs(lim)
    kw.update(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    demo.launch(**kw)
    cases = make_corpus(folder / "corpus", ip, (64, 64))
    _STEP_OUTPUTS[:] = demo.tsallis_app.api_outputs["step"]
    yield {"url": f"http://127.0.0.1:{port}/", "model": mid, "image": ip, "mask": mp, "cases": cases, "demo": demo}
    demo.close()


def _args(s, img=None, mask=None, ex="synthetic", model=None, attack="tsallis", opt="pgd", eps=8, steps=20, alpha=0,
          seed=0, sched="linear:-2:1"):
    return (img, mask, ex, model or s["model"], attack, opt, eps, steps, alpha, seed, sched)


_STEP_OUTPUTS: list[str] = []  # /step's output names (the app's api_outputs), set by the served fixture


def _status(out) -> str:
    return dict(zip(_STEP_OUTPUTS, out, strict=True))["status"]


def _normal_step(client, s) -> str:
    st = _status(client.predict(*_args(s), api_name="/step"))
    assert "record **" in st, st
    return st


def test_bad_input_corpus_through_the_api(served, report_figure):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    s = served
    client = Client(s["url"], verbose=False, download_files=False)  # statuses only: no panel downloads
    _normal_step(client, s)  # the session has a recorded run that refusals must not touch
    t0 = time.perf_counter()
    refused = converted = 0
    for case in s["cases"]:
        before = client.predict(0, api_name="/scrub")[0]
        if case.kind == "image":
            args = _args(s, img=handle_file(str(case.payload)), ex="")
        elif case.kind == "mask":
            args = _args(s, img=handle_file(str(s["image"])), mask=handle_file(str(case.payload)), ex="")
        else:
            args = _args(s, **case.payload)
        if case.ok:
            st = _status(client.predict(*args, api_name="/step"))
            assert case.expect in st, f"{case.name}: {st}"
            assert st.count("Input:") == 1, f"{case.name}: one note line expected: {st}"
            converted += 1
        else:
            try:
                out = client.predict(*args, api_name="/step")
            except AppError as e:
                msg = str(e)
            else:
                pytest.fail(f"{case.name}: accepted, status {_status(out)[:300]!r}")
            assert case.expect in msg, f"{case.name}: got {msg!r}"
            assert "Traceback" not in msg and len(msg) < 400 and "\n" not in msg.strip(), f"{case.name}: {msg!r}"
            after = client.predict(0, api_name="/scrub")[0]
            assert after == before, f"{case.name}: the refused request changed the session's run"
            refused += 1
        _normal_step(client, s)  # and the next normal request works
    # the comparison checks its inputs the same way, before touching the session's comparison
    client.submit(None, None, "synthetic", s["model"], ["ce", "js"], "pgd", 8, 3, 0, 0, "", api_name="/compare").result()
    before = client.predict(1, api_name="/compare_scrub")[0]
    bad = {c.name: c for c in s["cases"]}
    for args, expect in [((handle_file(str(bad["text file named .png"].payload)), None, "", s["model"], ["ce"], "pgd", 8,
                           3, 0, 0, ""), "not a readable image"),
                         ((None, None, "synthetic", s["model"], ["tsallis"], "pgd", 8, 3, 0, 0, "const:99"), "q must"),
                         ((None, None, "synthetic", s["model"], [], "pgd", 8, 3, 0, 0, ""), "tick at least one")]:
        with pytest.raises(AppError, match=re.escape(expect)):
            client.predict(*args, api_name="/compare")
        assert client.predict(1, api_name="/compare_scrub")[0] == before
    dt = time.perf_counter() - t0
    report_figure(f"bad input (API): {len(s['cases'])} cases ({refused} refused with their message, {converted} "
                  f"converted with a note), each followed by a normal request that worked; 3 comparison refusals left the "
                  f"comparison unchanged; {dt:.1f} s")


def _raw_call(url: str, api: str, data_json: str) -> tuple[str, str]:
    """POST ``data_json`` (may contain NaN/Infinity tokens) to Gradio's REST API; returns (event, data)."""
    import httpx

    r = httpx.post(f"{url}gradio_api/call/{api}", content=f'{{"data": {data_json}}}',
                   headers={"content-type": "application/json"}, timeout=30)
    r.raise_for_status()
    eid = r.json()["event_id"]
    text = httpx.get(f"{url}gradio_api/call/{api}/{eid}", timeout=60).text
    events = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("event:")]
    datas = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("data:")]
    return events[-1], datas[-1]


def test_nan_inf_and_server_paths_through_raw_http(served, report_figure):
    from gradio_client import Client

    s = served
    base = [None, None, "synthetic", s["model"], "tsallis", "pgd", 8, 5, 0, 0, "linear:-2:1"]
    client = Client(s["url"], verbose=False, download_files=False)  # statuses only: no panel downloads
    for name, token, pos, expect in RAW_CASES:
        items = [json.dumps(v) for v in base]
        items[pos] = token
        if pos == 0:
            items[2] = '""'
        ev, data = _raw_call(s["url"], "step", "[" + ", ".join(items) + "]")
        assert ev == "error", f"{name}: {ev} {data[:200]}"
        msg = json.loads(data)["error"]
        assert expect in msg, f"{name}: {msg!r}"
        _normal_step(client, s)
    # an upload over TSALLIS_MAX_UPLOAD_MB is refused by the upload route itself (and by gradio_client before sending)
    import httpx

    r = httpx.post(f"{s['url']}gradio_api/upload", files={"files": ("big.png", bytes(3 * 2**20), "image/png")},
                   timeout=30)
    assert r.status_code == 413 and "maximum allowed size" in r.text, (r.status_code, r.text[:200])
    big = Path(s["image"]).parent / "big_upload.png"
    big.write_bytes(bytes(3 * 2**20))
    from gradio_client import handle_file

    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        client.predict(handle_file(str(big)), None, "", s["model"], "ce", "pgd", 8, 2, 0, 0, "", api_name="/step")
    _normal_step(client, s)
    # the file route serves no server path either

    for path in ("/etc/passwd", "../../../../etc/passwd", str(Path(app.__file__).resolve())):
        r = httpx.get(f"{s['url']}gradio_api/file={path}", timeout=10)
        assert r.status_code in (403, 404), (path, r.status_code)
        assert "root:" not in r.text
    report_figure(f"bad input (raw HTTP): {len(RAW_CASES)} NaN/inf/server-path cases refused with their message; "
                  "an over-size upload refused (413); 3 file-route paths refused")


# -- browser ----------------------------------------------------------------------------------------------------
def test_bad_inputs_in_the_browser(served, report_figure):
    from _kit import CHROMIUM, LAUNCH_ARGS, SCREENS

    if not CHROMIUM.exists():
        pytest.skip("needs Debian's /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import expect, sync_playwright

    s = served
    by_name = {c.name: c for c in s["cases"]}
    shown = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(s["url"])
        page.wait_for_selector("#image_in input[type=file]", state="attached", timeout=30_000)
        page.get_by_label("PGD", exact=True).check()
        steps = page.locator("#steps input[type=number]")
        steps.fill("3")
        steps.press("Enter")
        status = page.locator("#status")

        def toast_says(fragment: str) -> None:
            toast = page.locator("[data-testid=toast-body]").filter(has_text=fragment)
            expect(toast.first).to_be_visible(timeout=20_000)
            shown.append(fragment)
            for btn in page.locator("[data-testid=toast-close]").all():
                with contextlib.suppress(Exception):  # already gone
                    btn.click(timeout=2000)

        def clear(selector: str) -> None:
            page.locator(f"{selector} button[aria-label^='Remove'], {selector} button[aria-label='Clear']").first.click()
            time.sleep(0.3)

        def upload(selector: str, path: Path) -> None:
            page.locator(f"{selector} input[type=file]").set_input_files(str(path))
            time.sleep(0.8)

        # 1. a text file named .png
        upload("#image_in", by_name["text file named .png"].payload)
        page.locator("#run_btn").click()
        toast_says("not a readable image")
        SCREENS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENS / "07_bad_input_toast.png"))
        # 2. a decompression bomb
        clear("#image_in")
        upload("#image_in", by_name["decompression bomb (30000² header)"].payload)
        page.locator("#run_btn").click()
        toast_says("too large")
        # 3. a good image with a mask of another size
        clear("#image_in")
        upload("#image_in", s["image"])
        upload("#mask_in", by_name["mask of another size"].payload)
        page.locator("#run_btn").click()
        toast_says("but the image is 64×64")
        # 4. a schedule whose q leaves the tested range: the preview warns, Run refuses
        clear("#mask_in")
        sched = page.get_by_label("q-schedule text")
        sched.fill("const:1e6")
        sched.press("Enter")
        page.locator("#run_btn").click()
        toast_says("q must stay within [-10, 3]")
        # 5. the next normal request works: the same upload with a sane schedule runs to the end
        sched.fill("linear:-2:1")
        sched.press("Enter")
        time.sleep(0.5)
        page.locator("#run_btn").click()
        expect(status).to_contain_text("finished", timeout=60_000)
        expect(status).to_contain_text("record 3 of 4", timeout=10_000)
        # 6. a converted input says so in the status line
        clear("#image_in")
        upload("#image_in", by_name["large photo"].payload)
        page.locator("#run_btn").click()
        expect(status).to_contain_text("downscaled from 1200×900 to 256×192", timeout=60_000)
        expect(status).to_contain_text("finished", timeout=60_000)
        page.screenshot(path=str(SCREENS / "08_bad_input_downscaled.png"))
        browser.close()
    report_figure(f"bad input (browser): {len(shown)} refusals shown as one error toast each, then a normal run and "
                  "a downscale note in the status line")
