"""`zoo summary` through main(): the table and totals for a config, --json, run=DIR, one-line failures."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_one_line_error, small_config, zoo_in_process
from tests.report.test_summary import PUBLISHED


def test_summary_of_a_config_matches_a_direct_count():
    from zoo.data import build_data
    from zoo.model import build_model
    from zoo.report.summary import summarize

    proc = zoo_in_process("summary", "model=cnn", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    cfg = small_config(model="cnn")
    data = build_data(cfg, 0)
    direct = summarize(build_model(cfg, data.info), (data.info.channels, *data.info.size), fields=False)
    assert got["params"] == direct.params > 0
    assert got["macs"] == direct.macs > 0
    assert got["input_shape"] == [1, 32, 32]
    assert [row["name"] for row in got["layers"]] == [r.name for r in direct.layers]
    assert any(row["field"] and row["field"]["size"] == [3, 3] for row in got["layers"])


def test_summary_prints_the_table_and_totals():
    proc = zoo_in_process("summary", "model=cnn", "data.size=16", "fields=false")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split() == [
        "layer",
        "type",
        "output",
        "params",
        "MACs",
        "memory",
        "RF",
        "stride",
    ]
    for total in ("input: 1x16x16", "parameters: ", "multiply-accumulates: ", "activation memory: ", "model size: "):
        assert total in proc.stdout


def test_bad_input_is_one_line():
    assert_one_line_error(zoo_in_process("summary", "model=nope"), "nope")
    assert_one_line_error(zoo_in_process("summary", "fields=maybe"), "fields")
    assert_one_line_error(zoo_in_process("summary", "fields=yes"), "fields='yes' is not true or false")  # as every bool
    assert_one_line_error(zoo_in_process("summary", "run=/nonexistent", "model=cnn"), "not both")
    assert_one_line_error(zoo_in_process("summary", "--bogus"), "--bogus")


def test_summary_of_a_run(digits_run):
    proc = zoo_in_process("summary", f"run={digits_run}", "fields=false", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["params"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_zoo_summary_of_torchvision_models_gives_the_published_figures(name, tmp_path):
    """The acceptance line through the CLI: model=torchvision with its own classifier (head=pretrained_classifier)
    at 224x224 counts what torchvision publishes. The data is two class folders named as ImageNet labels, which
    that head asks of a data set; nothing is downloaded (the weights are not loaded: only counted)."""
    from PIL import Image

    for label in ("tabby", "goldfish"):
        (tmp_path / label).mkdir()
        for i in range(6):
            Image.new("RGB", (8, 8), (40 * i, 80, 120)).save(tmp_path / label / f"{i}.png")
    proc = zoo_in_process(
        "summary",
        "model=torchvision",
        f"model.model_name={name}",
        "head=pretrained_classifier",
        "data=folder",
        f"data.root={tmp_path}",
        "data.size=224",
        "transfer=scratch",
        "fields=false",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    params, macs = PUBLISHED[name]
    assert got["params"] == params
    assert abs(got["macs"] - macs) / macs < 0.02, got["macs"]
