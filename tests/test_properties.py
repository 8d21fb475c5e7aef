"""Property-based tests (hypothesis): losses, q-schedules, and input handling that never crashes.

* Losses: finite values and gradients for logits up to ±1e3 and q in [−10, 3]; ignored pixels give exactly 0 and
  no gradient; JS in [0, log 2]; Tsallis with q < 1 in [0, 1/(1−q)].
* Schedules: ``parse_schedule(s.text()) == s``, values finite; any text either parses or raises ScheduleError.
* Input handling: random bytes, damaged real files and random arrays either load (H×W×3 uint8) or raise
  ImageError, nothing else; the app's control checks either build a config or raise InputError.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.extra import numpy as hnp
from PIL import Image

from attack_engine.images import ImageError, load_image, load_mask
from attack_engine.losses import ATTACKS, pixel_loss
from attack_engine.schedules import Schedule, ScheduleError, parse_schedule

set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "tsallis-hypothesis"))  # not a folder in the checkout
II = 255
FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
_COUNTS: dict[str, int] = {}


def _count(name: str) -> None:
    _COUNTS[name] = _COUNTS.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _report(report_figure):
    yield
    if _COUNTS:
        report_figure("properties (hypothesis examples): " + ", ".join(f"{k} {v}" for k, v in sorted(_COUNTS.items())))


# -- losses -------------------------------------------------------------------------------------------------
@st.composite
def logits_and_labels(draw):
    c = draw(st.integers(2, 5))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0, 1e3]))
    z = draw(hnp.arrays(np.float64, (1, c, h, w), elements=st.floats(-1, 1)))
    y = draw(hnp.arrays(np.int64, (1, h, w), elements=st.sampled_from([*range(c), II])))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return torch.tensor(z * scale, dtype=dtype), torch.tensor(y)


@FAST
@given(data=logits_and_labels(), name=st.sampled_from(ATTACKS), q=st.floats(-10, 3),
       step=st.integers(0, 20), total=st.integers(1, 20))
def test_losses_finite_ignore_zero_and_in_range(data, name, q, step, total):
    z, y = data
    step = min(step, total)
    z = z.clone().requires_grad_(True)
    loss = pixel_loss(name, z, y, step=step, total=total, q=q if name == "tsallis" else None, ignore_index=II)
    assert loss.shape == y.shape and torch.isfinite(loss).all(), loss
    ignored = y == II
    assert (loss[ignored] == 0).all(), "ignored pixels give exactly 0"
    assert (loss >= -1e-12).all()
    loss.sum().backward()
    g = z.grad
    assert torch.isfinite(g).all()
    assert (g.permute(0, 2, 3, 1)[ignored] == 0).all(), "and no gradient"
    if name == "js":
        assert (loss <= math.log(2) + 1e-9).all()
    if name == "tsallis" and q < 1:
        assert (loss <= 1.0 / (1.0 - q) + 1e-9).all()
    _count("losses")


# -- schedules ----------------------------------------------------------------------------------------------
REAL = st.floats(-1e6, 1e6, allow_nan=False)
PEAK = st.floats(0.0, 0.999, allow_nan=False)


@st.composite
def schedules(draw):
    kind = draw(st.sampled_from(["const", "linear", "cosine", "plinear", "pcosine", "points"]))
    if kind == "const":
        return Schedule("const", (draw(REAL),))
    if kind in ("linear", "cosine"):
        return Schedule(kind, (draw(REAL), draw(REAL)))
    if kind in ("plinear", "pcosine"):
        return Schedule(kind, (draw(PEAK), draw(PEAK)))
    ts = sorted(draw(st.lists(st.floats(0, 1), min_size=1, max_size=6)))
    return Schedule("points", (), tuple((t, draw(REAL)) for t in ts))


@FAST
@given(s=schedules(), total=st.integers(1, 50))
def test_schedule_text_round_trip_and_finite(s, total):
    assert parse_schedule(s.text()) == s
    assert parse_schedule(s.text()).text() == s.text()
    vals = s.values(total)
    assert len(vals) == total + 1 and all(math.isfinite(v) for v in vals)
    _count("schedules")


@FAST
@given(text=st.one_of(st.text(max_size=40),
                      st.from_regex(r"(const|linear|cosine|plinear|pcosine|points|\w*):[-0-9.e,:naifNI ]{0,20}",
                                    fullmatch=True)))
def test_any_schedule_text_parses_or_says_why(text):
    try:
        s = parse_schedule(text)
    except ScheduleError as e:
        assert str(e)
    else:
        assert parse_schedule(s.text()) == s and all(math.isfinite(v) for v in s.values(5))
    _count("schedule texts")


# -- input handling -------------------------------------------------------------------------------------------
def _check_loaded(arr: np.ndarray) -> None:
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3 and min(arr.shape[:2]) >= 1


def _load_or_image_error(src) -> bool:
    try:
        _check_loaded(load_image(src))
        return True
    except ImageError as e:
        assert str(e)
        return False


MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF", b"P6\n",
         b"\x00\x00\x01\x00", b"8BPS", b"%PDF", b""]


@FAST
@given(head=st.sampled_from(MAGIC), tail=st.binary(max_size=600))
def test_random_bytes_load_or_raise_image_error(head, tail):
    _load_or_image_error(head + tail)
    with contextlib.suppress(ImageError):
        load_mask(head + tail, 2)
    _count("random bytes")


def _encoded(mode: str, fmt: str, w: int, h: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))
    if mode == "I;16":
        im = Image.fromarray((rng.random((h, w)) * 65535).astype(np.uint16))
    elif mode != "RGB":
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


FORMATS = {"PNG": ["RGB", "L", "RGBA", "P", "I;16", "1", "LA"], "JPEG": ["RGB", "L", "CMYK"],
           "GIF": ["P", "L"], "BMP": ["RGB", "L", "P"], "TIFF": ["RGB", "L", "RGBA", "CMYK", "I;16"],
           "WEBP": ["RGB", "RGBA"]}


@st.composite
def encoded_images(draw):
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt]))
    return mode, fmt, _encoded(mode, fmt, draw(st.integers(1, 24)), draw(st.integers(1, 24)),
                               draw(st.integers(0, 10**6)))


@FAST
@given(img=encoded_images(), cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                                                 max_size=6))
def test_real_images_load_and_damaged_ones_load_or_raise(img, cut, flips):
    mode, fmt, data = img
    try:  # every intact image of every mode loads
        arr = load_image(data)
    except ImageError as e:
        raise AssertionError(f"an intact {fmt} image in mode {mode} was refused: {e}") from None
    _check_loaded(arr)
    _count("intact files")
    damaged = bytearray(data[: max(1, int(len(data) * cut))] if cut < 0.9 else data)
    for pos, val in flips:
        if damaged:
            damaged[int(pos * (len(damaged) - 1))] = val
    _load_or_image_error(bytes(damaged))
    _count("damaged files")


DTYPES = [np.uint8, np.uint16, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_,
          np.complex64]


@FAST
@given(arr=hnp.arrays(st.sampled_from(DTYPES), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
def test_random_arrays_load_or_raise_image_error(arr):
    _load_or_image_error(arr)
    _count("random arrays")


# -- the app's control checks ---------------------------------------------------------------------------------
ANY = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20), st.none(),
                st.text(max_size=8), st.booleans())


@FAST
@given(eps=ANY, steps=ANY, alpha=ANY, seed=ANY, sched=st.one_of(st.none(), st.text(max_size=30),
                                                                  st.sampled_from(["linear:-2:1", "const:1e9", ""])),
       attack=st.sampled_from([*ATTACKS, "nope"]), opt=st.sampled_from(["pgd", "apgd", "x"]))
def test_make_config_builds_or_says_why(eps, steps, alpha, seed, sched, attack, opt):
    from app.runner import InputError, make_config

    try:
        cfg = make_config(attack, opt, eps, steps, alpha, seed, sched)
    except InputError as e:
        assert str(e)
    else:
        assert cfg.steps >= 1 and math.isfinite(cfg.eps) and 0 < cfg.eps <= 32 / 255
        if cfg.schedule:
            assert all(-10 <= q <= 3 for q in parse_schedule(cfg.schedule).values(cfg.steps))
    _count("control values")
