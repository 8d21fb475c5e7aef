"""attack_engine.threads: one OpenMP thread for the engine's own ops, the caller's pool for the model's."""

from __future__ import annotations

import threading

import pytest
import torch

from attack_engine import AttackConfig, AttackRun, determinism, threads
from attack_engine.models import load_model


@pytest.fixture
def lean_on(monkeypatch):
    """Force the lean mode on for the test (the runtime is decided once per process: re-decide, then restore)."""
    monkeypatch.setenv(threads.ENV, "1")
    threads._runtime.cache_clear()
    if not threads.active():
        threads._runtime.cache_clear()
        pytest.skip("no OpenMP runtime to set per thread here")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
    monkeypatch.delenv(threads.ENV)
    threads._runtime.cache_clear()


@pytest.mark.parametrize(("env", "policy", "want"), [
    ("1", None, True), ("0", "PASSIVE", False), ("auto", "PASSIVE", True), ("auto", "passive", True),
    (None, "PASSIVE", True), (None, None, False), (None, "ACTIVE", False), ("auto", "", False),
])
def test_wanted_follows_the_override_then_the_wait_policy(monkeypatch, env, policy, want):
    for name, value in ((threads.ENV, env), ("OMP_WAIT_POLICY", policy)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert threads.wanted() is want


def test_lean_sets_one_thread_here_only_and_full_restores_the_callers(lean_on):
    seen = {}

    def other() -> None:
        seen["other"] = torch.get_num_threads()

    with threads.lean():
        assert torch.get_num_threads() == 1
        t = threading.Thread(target=other)
        t.start()
        t.join()
        with threads.full():
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
        with threads.lean():  # nested: full() still gives the outermost caller's count
            with threads.full():
                assert torch.get_num_threads() == 2
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    assert seen["other"] == 2  # another thread keeps its pool
    with threads.full():  # outside lean: no change
        assert torch.get_num_threads() == 2
    with threads.lean(enabled=False):
        assert torch.get_num_threads() == 2


def test_lean_restores_after_an_exception(lean_on):
    with pytest.raises(RuntimeError), threads.lean():
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_without_a_runtime_both_are_no_ops(monkeypatch):
    monkeypatch.setenv(threads.ENV, "0")
    threads._runtime.cache_clear()
    try:
        n = torch.get_num_threads()
        assert not threads.active()
        with threads.lean(), threads.full():
            assert torch.get_num_threads() == n
        assert "engine_one_thread" not in determinism.fingerprint()
    finally:
        monkeypatch.delenv(threads.ENV)
        threads._runtime.cache_clear()


class _CountingModel(torch.nn.Module):
    """The selfie model, noting the thread count its forward and its backward ran with."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner, self.info = inner, inner.info
        self.forward_threads: list[int] = []
        self.backward_threads: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_threads.append(torch.get_num_threads())
        return _NoteBackward.apply(self.inner(x), self.backward_threads)


class _NoteBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, log):
        ctx.log = log
        return z.view_as(z)

    @staticmethod
    def backward(ctx, g):
        ctx.log.append(torch.get_num_threads())
        return g, None


@pytest.mark.parametrize("optimizer", ["pgd", "apgd"])
def test_the_model_runs_on_the_pool_the_engine_on_one_thread_and_results_are_unchanged(lean_on, optimizer,
                                                                                      monkeypatch):
    """Lean on: the model's forward and backward see the caller's 2 threads, the objective 1, the caller 2 again
    between records; the iterates and accuracies equal a run with lean off (elementwise ops do not depend on the
    thread count; per-image means may differ in the last bits)."""
    import attack_engine.attack as attack_mod

    inner = load_model("mediapipe-selfie")
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 128, 128, generator=g)
    cfg = AttackConfig(optimizer=optimizer, steps=8, telemetry=True)
    objective_threads: list[int] = []
    real_terms = attack_mod.pixel_terms

    def noting_terms(*a, **k):
        objective_threads.append(torch.get_num_threads())
        return real_terms(*a, **k)

    monkeypatch.setattr(attack_mod, "pixel_terms", noting_terms)
    runs = {}
    for lean in (True, False):
        model = _CountingModel(inner)
        run = AttackRun(model, x, None, cfg)
        run._lean_cpu = lean
        objective_threads.clear()
        recs = []
        for rec in run:
            assert torch.get_num_threads() == 2  # the caller's count between records
            recs.append(rec)
        runs[lean] = (run, recs, list(objective_threads), model)
    run, recs, obj_t, model = runs[True]
    assert set(obj_t) == {1}
    assert set(model.forward_threads) == {2} and set(model.backward_threads) == {2}
    assert len(model.backward_threads) >= cfg.steps
    off_run, off_recs, off_t, _ = runs[False]
    assert set(off_t) == {2}
    assert len(recs) == len(off_recs)
    for a, b in zip(recs, off_recs, strict=True):
        assert torch.equal(a.x_adv, b.x_adv)
        assert torch.equal(a.acc, b.acc) and torch.equal(a.step_size, b.step_size)
        assert torch.allclose(a.loss, b.loss, rtol=1e-6, atol=0)
        assert torch.equal(a.p_true, b.p_true)
    assert torch.equal(run.result.x_adv, off_run.result.x_adv)
    assert determinism.fingerprint().get("engine_one_thread") is True
