"""The palette stays readable with colour-vision deficiency: every pair a reader must tell apart keeps a minimum
CIELAB difference under simulated deuteranopia and protanopia (Machado et al. 2009)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import app  # noqa: F401
from app import colour_vision as cv
from app import figures as fg
from app.palette import LINES_MUST_DIFFER, MUST_DIFFER
from attack_engine.registry import attack_specs

KINDS = ("normal", "deuteranopia", "protanopia")
MIN_AREA_DE = 30.0  # bars, stacked areas, map pixels: big patches side by side
MIN_LINE_DE = 15.0  # lines (also told apart by dash, width, legend and hover)


def _closest_pair(colours, kind):
    return min((cv.delta_e(a, b, kind), a, b) for a, b in itertools.combinations(colours, 2))


def test_simulation_matches_the_published_matrices():
    # grey stays grey (rows of each Machado matrix sum to 1) and pure red/green collapse under deuteranopia
    for kind in KINDS:
        assert np.allclose(cv.MACHADO_2009[kind].sum(1), 1.0, atol=1e-3)
        assert np.allclose(cv.simulate(np.array([128.0, 128, 128]), kind), 128, atol=0.6)
    assert cv.delta_e("#2ca02c", "#d62728", "deuteranopia") < 10  # the old correct/wrong pair merged
    assert cv.delta_e("#2ca02c", "#d62728", "normal") > 100
    # CIELAB of sRGB white and black, and a known value (sRGB red: L* 53.24, a* 80.09, b* 67.20)
    assert np.allclose(cv.to_lab(np.array([255.0, 255, 255])), [100, 0, 0], atol=0.05)
    assert np.allclose(cv.to_lab(np.array([0.0, 0, 0])), [0, 0, 0], atol=1e-6)
    assert np.allclose(cv.to_lab(np.array([255.0, 0, 0])), [53.24, 80.09, 67.20], atol=0.05)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("group", sorted(MUST_DIFFER))
def test_groups_that_must_differ_stay_apart(group, kind):
    de, a, b = _closest_pair(MUST_DIFFER[group], kind)
    assert de >= MIN_AREA_DE, f"{group}: {a} and {b} differ by ΔE {de:.1f} under {kind}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("group", sorted(LINES_MUST_DIFFER))
def test_line_groups_stay_apart(group, kind):
    de, a, b = _closest_pair(LINES_MUST_DIFFER[group], kind)
    assert de >= MIN_LINE_DE, f"{group}: {a} and {b} differ by ΔE {de:.1f} under {kind}"


@pytest.mark.parametrize("kind", KINDS)
def test_attack_colours_stay_apart(kind):
    colours = [s.colour for s in attack_specs()]
    assert len(set(colours)) == len(colours)
    de, a, b = _closest_pair(colours, kind)
    assert de >= MIN_LINE_DE, f"attack colours {a} and {b} differ by ΔE {de:.1f} under {kind}"


def test_figures_draw_with_the_checked_colours():
    """The figures use the palette (not some other literal), so the check above is about what is drawn."""
    hist = np.ones((2, 20))
    f = fg.histogram_figure(hist, "tsallis", 0, 10, "linear:-2:1", -2.0, 0)
    bars = {d["name"]: d["marker"]["color"] for d in f.data if d["type"] == "bar"}
    assert bars == {"correct": fg.CORRECT, "wrong": fg.WRONG}
    assert f.layout["shapes"][0]["line"]["color"] == fg.PEAK
    lab = np.array([[0, 0, 1, 1]])
    clean = np.array([[0, 1, 0, 1]])
    pred = np.array([[1, 0, 2, 1]])  # wrong<-right, right<-wrong, wrong->other wrong, unchanged
    img = np.asarray(fg.flipped_image(fg.dimmed(np.zeros((1, 4, 3), np.uint8)), pred, clean, lab,
                                      np.ones_like(lab, bool)))
    assert [tuple(v) for v in img[0, :3]] == [fg.FLIP_TO_WRONG, fg.FLIP_TO_RIGHT, fg.FLIP_WRONG_TO_WRONG]
    specs = {s.title: s.colour for s in attack_specs()}
    cmp = fg.compare_curves_figure({t: np.zeros(3) for t in specs})
    assert {d["name"]: d["line"]["color"] for d in cmp.data} == specs
