"""A 7th attack is one registered function plus its test reference (ARCHITECTURE.md, "Recipe: a new attack").

This test follows the recipe literally: it registers a throwaway attack — focal CE, ``ℓ = (1 − p_y)^γ · CE`` with a
detached weight and γ from a schedule — checks it against its reference, and then runs it, unchanged and by name
only, through the engine, the command line and the app's public endpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _kit import free_port

import app  # noqa: F401  (offline environment before gradio)
from attack_engine import AttackConfig, AttackRun
from attack_engine.cli import main as cli_main
from attack_engine.losses import PixelInputs, pixel_terms, plain_pixel_loss
from attack_engine.registry import attack_names, get_attack, register_attack, unregister_attack

NAME = "focal_test"


def _plain_focal(t, gamma):  # the textbook form: plain autograd on F.cross_entropy
    return (1 - torch.exp(-t.ce)).detach() ** gamma * t.ce


def focal(t: PixelInputs, gamma: float):
    """Step 1 of the recipe: one objective, (PixelInputs, param) -> (loss, weight)."""
    weight = (1 - t.p_true) ** gamma
    return weight * t.ce, weight


@pytest.fixture(scope="module")
def focal_registered():
    register_attack(NAME, title="FocalPGD (test)", colour="#17becf", plain=_plain_focal, param="γ",
                    schedule="linear:0:2", formula="(1 − p_y)^γ · CE")(focal)
    yield get_attack(NAME)
    unregister_attack(NAME)


# -- step 2 of the recipe: the test reference --------------------------------------------------------------
def test_reference_formula_and_gradient(focal_registered):
    torch.manual_seed(0)
    z = (torch.randn(2, 4, 5, 6, dtype=torch.float64) * 3).requires_grad_(True)
    y = torch.randint(0, 4, (2, 5, 6))
    y[0, 0, :3] = 255  # ignored pixels give exactly 0 and no gradient
    t = pixel_terms(NAME, z, y, step=3, total=6, with_grad_norm=True)
    gamma = 0 + 2 * 3 / 6  # linear:0:2 at step 3 of 6
    assert t.param == pytest.approx(gamma)
    valid = y != 255
    p = torch.softmax(z.detach(), 1).gather(1, y.clamp(0, 3)[:, None])[:, 0]
    ref = torch.where(valid, (1 - p) ** gamma * -torch.log(p), torch.zeros_like(p))
    assert torch.allclose(t.loss.detach(), ref, rtol=1e-12, atol=1e-15)
    (g,) = torch.autograd.grad(t.loss.sum(), z)
    zz = z.detach().clone().requires_grad_(True)
    ce = torch.nn.functional.cross_entropy(zz, y, ignore_index=255, reduction="none")
    w = (1 - torch.exp(-ce)).detach() ** gamma
    (g_ref,) = torch.autograd.grad((w * ce).sum(), zz, retain_graph=True)
    assert torch.allclose(g, g_ref, rtol=1e-10, atol=1e-14)
    assert torch.equal(g[0, :, 0, :3], torch.zeros_like(g[0, :, 0, :3]))
    # the gradient weight relative to CE is the weight, and the telemetry's |dℓ/dz| = weight · ||dCE/dz||
    assert torch.allclose(t.weight, torch.where(valid, (1 - p) ** gamma, torch.zeros_like(p)), rtol=1e-12)
    ce_grad = torch.autograd.grad(ce.sum(), zz)[0].norm(dim=1)
    assert torch.allclose(t.weight * t.ce_grad_norm, w * ce_grad * valid, rtol=1e-10, atol=1e-14)
    assert torch.allclose(t.log_grad[valid].exp(), (w * ce_grad)[valid], rtol=1e-10)
    # the plain form agrees in value
    plain = plain_pixel_loss(NAME, z.detach(), y, step=3, total=6)
    assert torch.allclose(plain, ref, rtol=1e-10, atol=1e-14)


# -- nothing else is edited: the engine, the CLI and the app take it by name --------------------------------
def test_engine_runs_it_with_its_schedule(focal_registered):
    assert NAME in attack_names()
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    torch.manual_seed(1)
    x = torch.rand(1, 3, 16, 16)
    cfg = AttackConfig(attack=NAME, optimizer="pgd", steps=4, schedule="const:1")
    params = [r.param for r in AttackRun(lambda v: conv(v) * 5, x, None, cfg)]
    assert params == [1.0] * 5
    assert AttackConfig(attack=NAME).q_schedule.text() == "linear:0:2"  # its own default schedule


def test_cli_runs_it(focal_registered, tmp_path, capsys):
    from app.standin import register_standin, write_synthetic_example

    mid = register_standin()
    ip, mp = write_synthetic_example(tmp_path, 48)
    out = tmp_path / "run.json"
    assert cli_main(["attack", "--model", mid, "--image", str(ip), "--mask", str(mp), "--attack", NAME,
                     "--schedule", "const:2", "--steps", "3", "--optimizer", "pgd", "--out", str(out),
                     "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "FocalPGD (test) PGD" in text and "schedule=const:2" in text
    card = json.loads(out.read_text())
    assert card["config"]["attack"] == NAME and card["per_record"]["param"] == [2.0] * 4
    with pytest.raises(SystemExit):  # the help text is built from the registry
        cli_main(["attack", "--help"])
    assert f"{NAME}=FocalPGD (test)" in capsys.readouterr().out


@pytest.fixture(scope="module")
def server(focal_registered, tmp_path_factory):
    from app.launch import build_demo
    from app.sources import ExampleItem
    from app.standin import register_standin, write_synthetic_example

    folder = tmp_path_factory.mktemp("registry")
    mid = register_standin()
    ip, mp = write_synthetic_example(folder, 64)
    demo = build_demo(mid, [ExampleItem("synthetic", "Synthetic", ip, {2: mp})], folder / "no-precomputed")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield {"url": f"http://127.0.0.1:{port}/", "model": mid, "outputs": demo.tsallis_app.api_outputs}
    demo.close()


def test_app_endpoints_run_it(server):
    from gradio_client import Client

    client = Client(server["url"], verbose=False)
    fig, msg = client.predict(NAME, "linear:0:2", 6, "pgd", api_name="/preview")
    assert fig["type"] == "plotly" and "linear:0:2" in msg
    assert any(tr.get("name") == "γ over iterations" for tr in json.loads(fig["plot"])["data"])
    args = ("synthetic", server["model"], NAME, "pgd", 8, 3, 0, 0, "const:2")
    outs = list(client.submit(None, None, *args, api_name="/run"))
    status = dict(zip(server["outputs"]["run"], outs[-1], strict=True))["status"]
    assert "FocalPGD (test)" in status and "γ = 2.00" in status and "finished" in status
    card, _csv, _png, _gif, link = client.predict(*args, api_name="/export")
    c = json.loads(Path(card).read_text())
    assert c["config"]["attack"] == NAME and c["config"]["schedule"] == "const:2" and c["records"] == 4
    assert f"attack={NAME}" in link and "schedule=const" in link
    outs = list(client.submit(None, None, "synthetic", server["model"], ["ce", NAME], "pgd", 8, 3, 0, 0, "const:2",
                              api_name="/compare"))
    table = outs[-1][4]
    assert sorted(r[0] for r in table["data"]) == ["CE-PGD", "FocalPGD (test)"]
