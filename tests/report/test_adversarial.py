"""zoo explain adversarial: FGSM and PGD (captum.robust) lower the digits model's test accuracy as epsilon grows,
stay within epsilon and [0, 1], and bad parameters are one line."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from tests.conftest import run_zoo
from zoo.report.explain import explain
from zoo_plugins.interpretation.adversarial import Adversarial


@pytest.mark.slow
def test_fgsm_lowers_the_demo_models_test_accuracy_monotonically_in_epsilon(digits_run, tmp_path):
    params = {"method": "fgsm", "epsilons": [0, 0.05, 0.1, 0.2], "max_images": 200}
    record = explain("adversarial", params, str(digits_run), None, 2, str(tmp_path / "out"))
    acc = record["accuracy"]["fgsm"]
    assert record["epsilons"] == [0.0, 0.05, 0.1, 0.2] and record["test_images"] == 200
    assert acc[0] >= 0.6, acc  # the trained model, unattacked
    assert acc[2] < acc[0] - 0.2, acc  # FGSM at 0.1 costs it
    assert all(a >= b for a, b in zip(acc, acc[1:])), acc  # monotone in epsilon
    names = sorted(p.rsplit("/", 1)[-1] for p in record["files"])
    assert names == ["adversarial_accuracy.png", "adversarial_examples.png", "summary.json"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["accuracy"] == record["accuracy"] and len(summary["examples"]) == 2
    assert {"image", "before", "fgsm"} == set(summary["examples"][0])


@pytest.mark.slow
def test_pgd_is_at_least_as_strong_as_fgsm_and_the_cli_prints_the_table(digits_run, tmp_path):
    out = tmp_path / "both"
    proc = run_zoo(
        "explain", "adversarial", f"run={digits_run}", f"output={out}", "samples=1", "epsilons=[0,0.1]", "max_images=64"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["method"] == "adversarial"  # stdout stays one JSON line
    acc = json.loads((out / "summary.json").read_text())["accuracy"]
    assert acc["pgd"][0] == acc["fgsm"][0] and acc["pgd"][1] <= acc["fgsm"][1], acc
    assert "epsilon    FGSM     PGD" in proc.stderr and f"     0.1   {acc['fgsm'][1]:.3f}" in proc.stderr


def test_attacks_stay_within_epsilon_and_the_pixel_range():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 4, (6,))
    attack = Adversarial("both", [0.1], 0.1, 5, None, 10)
    for method in ("fgsm", "pgd"):
        adv = attack.attack(model, method, x, y, 0.1)
        assert adv.shape == x.shape and not adv.requires_grad
        assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        assert (adv != x).any()  # it moved
        loss = nn.functional.cross_entropy
        assert loss(model(adv), y) > loss(model(x), y)  # uphill for the true labels
    assert torch.equal(attack.attack(model, "fgsm", x, y, 0.0), x)


@pytest.mark.parametrize(
    "arg,fragment",
    [
        ("epsilons=[0,1.5]", "must be in [0, 1]"),
        ("method=deepfool", "explain.adversarial.method='deepfool' is not one of"),
        ("steps=0", "explain.adversarial.steps=0 must be"),
        ("epsilons=[]", "explain.adversarial.epsilons"),
    ],
)
def test_bad_parameters_are_one_line_before_any_work(tmp_path, capsys, arg, fragment):
    from zoo.cli import main

    assert main(["explain", "adversarial", f"run={tmp_path / 'none'}", f"output={tmp_path / 'out'}", arg]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "out").exists()
