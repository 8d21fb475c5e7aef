"""The typed run request (app/request.py): built once from the controls, checked in one place."""

from __future__ import annotations

import inspect

import pytest

import app  # noqa: F401  (offline environment before gradio)
from app.request import API_NAMES, FIELDS, RunRequest, takes_request
from app.runner import InputError


def _req(**kw) -> RunRequest:
    base = dict(image=None, mask=None, example="synthetic", model="standin-tiny", attack="tsallis",
                optimizer="pgd", eps=8, steps=5, alpha=0, seed=0, schedule="linear:-2:1")
    return RunRequest(**{**base, **kw})


def test_config_checks_every_control_by_name():
    cfg = _req().config()
    assert (cfg.attack, cfg.optimizer, cfg.steps, cfg.schedule) == ("tsallis", "pgd", 5, "linear:-2:1")
    assert cfg.eps == pytest.approx(8 / 255)
    for bad, msg in ((dict(eps=float("nan")), "ε (/255) must be a finite number"), (dict(steps=2.5), "Steps"),
                     (dict(seed=-1), "Seed"), (dict(schedule="const:1e6"), "q must stay within"),
                     (dict(schedule="cosine:1"), "schedule"), (dict(attack=3), "attack and optimiser")):
        with pytest.raises(InputError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            _req(**bad).config()


def test_values_round_trip_and_the_run_key():
    r = _req()
    assert RunRequest.from_values(r.values()) == r and len(r.values()) == len(FIELDS)
    with pytest.raises(TypeError, match="takes 11 values"):
        RunRequest.from_values(r.values()[:-1])
    cfg = r.config()
    assert r.key(cfg) == _req().key(cfg)  # same input, model and config: the same run
    assert r.key(cfg) != _req(example="other").key(cfg) != _req(model="x").key(cfg)
    assert r.key(cfg) != r.key(_req(seed=1).config())
    assert r.with_attack("ce").attack == "ce" and r.attack == "tsallis"


def test_takes_request_keeps_the_api_parameter_names_and_streaming():
    def plain(req: RunRequest, state):
        return req, state

    def streaming(req: RunRequest, state):
        yield req
        yield state

    h = takes_request(plain)
    assert list(inspect.signature(h).parameters) == [*API_NAMES, "state"]
    req, state = h(*_req().values(), "S")
    assert req == _req() and state == "S"
    g = takes_request(streaming)
    assert inspect.isgeneratorfunction(g) and list(g(*_req().values(), "S")) == [_req(), "S"]
    part = takes_request(plain, FIELDS[2:])  # the export's inputs: no image or mask
    assert list(inspect.signature(part).parameters) == [*API_NAMES[2:], "state"]
    assert part(*_req().values()[2:], "S")[0] == _req()
