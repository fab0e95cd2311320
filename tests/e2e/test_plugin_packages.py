"""Third-party plugin packages: discovery, configs, isolation, collisions, API versions, new-plugin.

Packages are installed into temporary folders put on PYTHONPATH of a `zoo` subprocess, so the test
environment itself never changes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, assert_one_line_error, run_zoo, run_zoo_batch, zoo_in_process
from zoo.bench import write_fake_package

PACKAGE = ROOT / "tests" / "plugin_package"


def pip_install(source: Path, target: Path) -> None:
    """pip install SOURCE --target TARGET, built from a copy: building writes build/ and egg-info beside the source."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / source.name
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--target",
                str(target),
                str(copy),
            ],
            check=True,
            capture_output=True,
        )


def with_site(*sites: Path) -> dict:
    return {"PYTHONPATH": os.pathsep.join(str(s) for s in sites)}


@pytest.fixture(scope="module")
def acme(tmp_path_factory) -> Path:
    """tests/plugin_package (zoo-acme) installed with pip into a folder of its own."""
    site = tmp_path_factory.mktemp("acme-site")
    pip_install(PACKAGE, site)
    return site


@pytest.mark.slow
def test_installed_package_appears_in_zoo_list(acme):
    proc = run_zoo("list", env=with_site(acme))
    assert proc.returncode == 0, proc.stderr
    rows = {tuple(line.split()[:2]): line.split()[-1] for line in proc.stdout.splitlines() if line.strip()}
    for kind, name in [
        ("architecture", "acme_net"),
        ("head", "acme_linear"),
        ("augmentation", "acme_invert"),
        ("transfer", "acme_freeze_stem"),
        ("dataset", "acme_bars"),
        ("interpretation", "acme_contrast"),
    ]:
        assert rows[(kind, name)] == "zoo-acme"
    assert proc.stderr == ""
    assert "acme_net" not in zoo_in_process("list").stdout  # nothing leaks into the plain environment


@pytest.mark.slow
def test_experiment_from_the_package_trains_and_exports(acme, tmp_path):
    run, out = tmp_path / "run", tmp_path / "onnx"
    proc = run_zoo("train", "experiment=acme_demo", "trainer.max_epochs=1", f"hydra.run.dir={run}", env=with_site(acme))
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = (run / "config.yaml").read_text()
    assert "name: acme_net" in cfg and "acme_invert" in cfg and "name: acme_freeze_stem" in cfg
    proc = run_zoo("export", f"checkpoint={run}", f"output={out}", env=with_site(acme))
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = json.loads((out / "model.json").read_text())
    assert card["labels"] == ["horizontal", "vertical"] and card["parity"]["max_abs_diff"]["probabilities"] <= 1e-4
    # the package's interpretation plugin explains the run like zoo's own
    seen = tmp_path / "explain"
    proc = run_zoo(
        "explain", "acme_contrast", f"run={run}", f"output={seen}", "samples=3", "factor=0.25", env=with_site(acme)
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((seen / "summary.json").read_text())
    assert summary["params"] == {"factor": 0.25} and len(summary["drop"]) == 3 and (seen / "contrast.png").is_file()


@pytest.mark.slow
def test_model_by_name_and_preset_from_the_package(acme, tmp_path):
    proc = run_zoo(
        "train",
        "model=acme_net",
        "trainer.max_epochs=1",
        "trainer.progress=false",
        f"hydra.run.dir={tmp_path}",
        env=with_site(acme),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_zoo("train", "--cfg", "job", "model=acme_net_wide", env=with_site(acme))
    assert proc.returncode == 0 and "width: 32" in proc.stdout and "name: acme_net" in proc.stdout


def test_hydra_flags_after_the_overrides_with_a_package_config_folder(acme, tmp_path):
    # Hydra users type flags last; zoo's own search-path addition never breaks Hydra's argument grammar
    proc = run_zoo("train", "experiment=acme_demo", "--cfg", "job", "trainer.lr=0.02", env=with_site(acme))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "name: acme_net" in proc.stdout and "lr: 0.02" in proc.stdout


def test_readme_shows_the_tested_package():
    """What docs/plugins.md's 'Writing a plugin package' shows is exactly what these tests install."""
    readme = (ROOT / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", readme, re.S)
    shown = dict(blocks)
    expected = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert set(shown) == expected
    for path, text in shown.items():
        assert (ROOT / path).read_text() == text, path


def test_readme_plugin_section_documents_every_hook_the_errors_the_test_helper_and_qualified_names():
    # the section moved from the README to docs/plugins.md, where it is the last one
    readme = (ROOT / "docs" / "plugins.md").read_text()
    section = readme[readme.index("## Writing a plugin package") :]
    from zoo.model import Backbone, Head, Transfer

    hooks = {
        Backbone: ("stages", "load_source", "weight_sources"),
        Head: ("prepare", "load_source", "monitor", "monitor_mode", "dynamic_size", "wants_input_size"),
        Transfer: ("setup", "param_groups", "on_epoch_start", "cache_features"),
    }
    for cls, names in hooks.items():
        for name in names:
            assert hasattr(cls, name) and f"`{cls.__name__}.{name}" in section, (cls.__name__, name)
    for needed in ("zoo.ZooError", "zoo.PluginError", "ZOO_DEBUG=1", "zoo.testing.check_plugin", "zoo.load_weights"):
        assert needed in section, needed
    assert "Qualified names" in section and "entry point's" in section and "API versions" in section
    # shell examples run as written in bash: Hydra's braces and brackets are quoted, on every page that has them
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    blocks = [block for page in pages for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S)]
    commands = [line for block in blocks for line in block.splitlines()]
    for line in commands:
        code = line.split("  #")[0]
        for token in code.split():
            assert not ("={" in token or "=[" in token) or token[0] in "'\"", line
        assert " | " not in code, line


@pytest.mark.slow
def test_broken_package_costs_one_warning(acme, tmp_path):
    write_fake_package(tmp_path, "zoo-broken", "zoo_broken", "raise RuntimeError('acme lab on fire')\n")
    proc, full, train = run_zoo_batch(
        ["list"], ["list", "--errors"], ["train", "--cfg", "job", "model=acme_net"], env=with_site(acme, tmp_path)
    )
    assert proc.returncode == 0 and "acme_net" in proc.stdout and "lenet5" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "'zoo-broken'" in warnings[0] and "RuntimeError: acme lab on fire" in warnings[0]
    assert "Traceback" in full.stdout and "acme lab on fire" in full.stdout
    assert train.returncode == 0  # everything else still works


@pytest.mark.slow
def test_invalid_registration_is_refused_with_a_message_for_the_author(tmp_path):
    write_fake_package(
        tmp_path,
        "zoo-sloppy",
        "zoo_sloppy",
        "from zoo import register\n\n@register.augmentation('sloppy')\n"
        'def sloppy(info, strength=1.0):\n    """No types."""\n',
    )
    write_fake_package(
        tmp_path / "noinfo",
        "zoo-noinfo",
        "zoo_noinfo",
        "ZOO_PLUGIN_API = 2\nfrom torch import nn\nfrom zoo import register\nfrom zoo.model import Backbone\n\n"
        '@register.architecture(\'noinfo\')\nclass NoInfo(Backbone):\n    """Forgets feature_info."""\n'
        "    def __init__(self, in_channels: int):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(in_channels, 8, 3)\n"
        "    def stages(self):\n        return [self.conv]\n",
    )
    proc = run_zoo("list", env=with_site(tmp_path, tmp_path / "noinfo"))
    assert proc.returncode == 0 and "lenet5" in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "'zoo-sloppy'" in lines[0] and "parameter 'strength' has no type annotation" in lines[0]
    # feature_info is an instance attribute (set in __init__, a helper or a property): checked when built
    assert "noinfo" in proc.stdout
    run = f"hydra.run.dir={tmp_path / 'run'}"
    proc = run_zoo("train", "model=noinfo", "trainer.max_epochs=1", run, env=with_site(tmp_path / "noinfo"))
    assert_one_line_error(proc, "model=noinfo", "feature_info")


RAISING = """ZOO_PLUGIN_API = 2
from zoo import register
from zoo.model import Transfer


@register.augmentation("acme_posterize")
def posterize(info, bits: int = 4) -> object:
    \"\"\"Posterize to `bits` bits.\"\"\"
    if bits > 3:
        raise ValueError(f"bits={bits} is too many for posterize\\nsecond line")
    return None


class Loud(Transfer):
    def setup(self, model):
        raise ValueError("no weights here")


@register.transfer("acme_loud")
def loud() -> Transfer:
    \"\"\"Fails in setup.\"\"\"
    return Loud()


@register.transfer("acme_broken")
def broken(level: int = 1) -> Transfer:
    \"\"\"Fails in its factory.\"\"\"
    assert level > 1, "level must be above 1"
    return Loud()
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "override, fragments",
    [
        ("+aug.ops.acme_posterize={}", ["augmentation 'acme_posterize'", "ValueError: bits=4 is too many", "built"]),
        ("transfer=acme_loud", ["transfer 'acme_loud'", "ValueError: no weights here", "in setup(model)"]),
        ("transfer=acme_broken", ["transfer 'acme_broken'", "AssertionError: level must be above 1"]),
    ],
)
def test_an_exception_a_plugin_raises_is_one_line_naming_it_and_leaves_no_run(tmp_path, override, fragments):
    write_fake_package(tmp_path / "site", "zoo-raising", "zoo_raising", RAISING)
    run = tmp_path / "run"
    args = ("train", override, "trainer.max_epochs=1", f"hydra.run.dir={run}")
    proc = run_zoo(*args, env=with_site(tmp_path / "site"))
    assert_one_line_error(proc, *fragments, "of package 'zoo-raising'", "ZOO_DEBUG=1")
    assert "second line" not in proc.stderr and not run.exists()
    if override.startswith("+aug"):
        debug = run_zoo(*args, env={**with_site(tmp_path / "site"), "ZOO_DEBUG": "1"})
        assert debug.returncode == 2 and "Traceback" in debug.stderr and "second line" in debug.stderr
        assert debug.stderr.strip().splitlines()[-1].startswith("zoo: error: augmentation 'acme_posterize'")
        assert not run.exists()


@pytest.mark.slow
def test_collisions_name_both_packages_and_qualified_names_resolve(tmp_path):
    source = (
        "ZOO_PLUGIN_API = 2\nfrom torch import nn\nfrom zoo import register\n"
        "from zoo.model import Backbone, FeatureInfo\n\n"
        '@register.architecture(\'{name}\')\nclass Net(Backbone):\n    """{who}\'s net."""\n'
        "    def __init__(self, in_channels: int, width: int = {width}):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(in_channels, width, 3, stride=2, padding=1)\n"
        "        self.feature_info = [FeatureInfo(width, 2)]\n"
        "    def forward(self, x):\n        return [self.conv(x)]\n"
        "    def stages(self):\n        return [self.conv]\n"
    )
    write_fake_package(tmp_path, "zoo-alpha", "zoo_alpha", source.format(name="twin", who="alpha", width=8))
    write_fake_package(tmp_path, "zoo-beta", "zoo_beta", source.format(name="twin", who="beta", width=12))
    write_fake_package(tmp_path / "gamma", "zoo-gamma", "zoo_gamma", source.format(name="cnn", who="gamma", width=4))
    qualified = (("zoo-beta:twin", 12), ("alpha:twin", 8))
    plain, *picked = run_zoo_batch(
        ["train", "model=twin"],
        *(["train", "--cfg", "job", f"model={q}"] for q, _ in qualified),
        env=with_site(tmp_path),
    )
    assert_one_line_error(
        plain,
        "architecture 'twin' is registered by package 'zoo-alpha'",
        "package 'zoo-beta'",
        "'zoo-alpha:twin' or 'zoo-beta:twin'",
    )
    for proc, (_, width) in zip(picked, qualified):
        assert proc.returncode == 0 and f"width: {width}" in proc.stdout, proc.stderr
    # a package never silently replaces a standard plugin: model=cnn stays zoo's, with a warning
    proc = run_zoo("train", "--cfg", "job", "model=cnn", env=with_site(tmp_path / "gamma"))
    assert proc.returncode == 0 and "padding_mode" in proc.stdout
    assert "package 'zoo-gamma' registers architecture 'cnn', which zoo already provides" in proc.stderr
    assert "theirs is 'zoo-gamma:cnn'" in proc.stderr


TWIN = """ZOO_PLUGIN_API = 2
from pathlib import Path

from torch import nn
from torchvision.transforms import v2
from zoo import register
from zoo.model import Backbone, FeatureInfo

ZOO_CONFIG_DIR = {conf!r}


@register.architecture("twin")
class Net(Backbone):
    \"\"\"{who}'s net.\"\"\"

    def __init__(self, in_channels: int, {param}: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, {param}, 3, stride=2, padding=1)
        self.feature_info = [FeatureInfo({param}, 2)]

    def forward(self, x):
        return [self.conv(x)]

    def stages(self):
        return [self.conv]


@register.augmentation("twin_flip")
def flip(info, {param}: float = 0.5) -> v2.Transform:
    \"\"\"{who}'s flip.\"\"\"
    return v2.RandomHorizontalFlip({param})
"""


@pytest.mark.slow
def test_a_package_preset_names_its_own_plugin_whatever_else_is_installed(tmp_path):
    # zoo-alpha ships presets naming `twin` bare; zoo-beta registers another `twin` with other parameters
    conf = tmp_path / "alpha-conf"
    (conf / "model").mkdir(parents=True)
    (conf / "experiment").mkdir()
    (conf / "model" / "twin_wide.yaml").write_text("defaults:\n  - twin\n  - _self_\nwidth: 32\n")
    (conf / "experiment" / "alpha_demo.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: twin\n  - override /aug: none\n"
        "model:\n  width: 12\naug:\n  ops:\n    twin_flip: {width: 0.3}\ntrainer:\n  max_epochs: 1\n"
    )
    alpha = TWIN.format(conf=str(conf), who="alpha", param="width")
    write_fake_package(tmp_path / "site", "alpha-zoo", "alpha_zoo", alpha, entry_name="al")
    write_fake_package(tmp_path / "site", "zoo-beta", "zoo_beta", TWIN.format(conf=None, who="beta", param="depth"))
    env = with_site(tmp_path / "site")
    qualifiers = ("al", "alpha-zoo", "alpha_zoo")
    wide, *picked, plain = run_zoo_batch(
        ["train", "--cfg", "job", "model=twin_wide"],
        *(["train", "--cfg", "job", f"model={q}:twin", "model.width=5"] for q in qualifiers),
        ["train", "model=twin"],
        env=env,
    )
    assert wide.returncode == 0, wide.stderr
    assert "name: alpha-zoo:twin" in wide.stdout and "width: 32" in wide.stdout
    # the entry point's name (`al = alpha_zoo`) qualifies too, as do the distribution's and the module's
    for qualifier, proc in zip(qualifiers, picked):
        assert proc.returncode == 0 and "width: 5" in proc.stdout, (qualifier, proc.stderr)
    assert_one_line_error(plain, "'alpha-zoo:twin' or 'zoo-beta:twin'")
    run = tmp_path / "run"
    proc = run_zoo("train", "experiment=alpha_demo", "trainer.progress=false", f"hydra.run.dir={run}", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = (run / "config.yaml").read_text()
    assert "name: alpha-zoo:twin" in cfg and "width: 12" in cfg and "alpha-zoo:twin_flip" in cfg


@pytest.mark.slow
def test_plugin_api_mismatch_is_a_clear_message(tmp_path):
    write_fake_package(tmp_path, "zoo-future", "zoo_future", "ZOO_PLUGIN_API = 99\nfrom zoo import register\n")
    proc = run_zoo("list", env=with_site(tmp_path))
    assert proc.returncode == 0
    assert "'zoo-future'" in proc.stderr and "needs zoo plugin API 99, this zoo provides 2" in proc.stderr


@pytest.mark.slow
def test_a_package_written_for_plugin_api_1_is_refused_by_name(tmp_path):
    # version 2 changed Backbone.load_pretrained(file) to load_source(source): a version-1 package is skipped
    write_fake_package(tmp_path, "zoo-old", "zoo_old", "ZOO_PLUGIN_API = 1\nfrom zoo import register\n")
    proc = run_zoo("list", env=with_site(tmp_path))
    assert proc.returncode == 0
    warning = [line for line in proc.stderr.splitlines() if "zoo-old" in line]
    assert len(warning) == 1 and "needs zoo plugin API 1, this zoo provides 2" in warning[0]


@pytest.mark.slow
def test_a_package_that_declares_no_plugin_api_gets_one_warning_naming_it(tmp_path):
    source = "from zoo import register\n\n\n@register.augmentation('quiet_op')\ndef op(info) -> object:\n"
    write_fake_package(tmp_path, "zoo-quiet", "zoo_quiet", source + '    """An op."""\n    return None\n')
    proc = run_zoo("list", "augmentation", env=with_site(tmp_path))
    assert proc.returncode == 0 and "quiet_op" in proc.stdout  # it loads
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "'zoo-quiet' declares no ZOO_PLUGIN_API" in lines[0], proc.stderr
    assert "set ZOO_PLUGIN_API = 2 in zoo_quiet" in lines[0]


@pytest.mark.slow
def test_autoload_can_be_turned_off(acme):
    proc = run_zoo("list", env={**with_site(acme), "ZOO_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert proc.returncode == 0 and "acme_net" not in proc.stdout and "lenet5" in proc.stdout


@pytest.mark.slow
def test_new_plugin_installs_and_passes_its_own_test(tmp_path):
    proc = run_zoo("new-plugin", "acme", f"output={tmp_path / 'zoo-acme'}")
    assert proc.returncode == 0, proc.stderr
    site = tmp_path / "site"
    pip_install(tmp_path / "zoo-acme", site)
    assert "acme_net" in run_zoo("list", "architecture", env=with_site(site)).stdout
    test = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path / "zoo-acme",
        env={**os.environ, **with_site(site)},
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stdout[-3000:]
    assert "4 passed" in test.stdout
    again = zoo_in_process("new-plugin", "acme", f"output={tmp_path / 'zoo-acme'}")
    assert_one_line_error(again, "already exists")
    assert_one_line_error(zoo_in_process("new-plugin", "Bad-Name", cwd=tmp_path), "must be lower-case")


@pytest.mark.slow
def test_discovery_benchmark_reports_cold_and_warm_beside_the_yardsticks():
    proc = zoo_in_process("bench", "discovery", "packages=1", "repeats=1")  # its own runs are new processes
    assert proc.returncode == 0, proc.stderr
    assert "1 plugin packages installed" in proc.stdout
    for row in ["python -c pass", "python -c 'import torch'"] + [
        f"{command} ({when}" for command in ("zoo list", "zoo train model.widht=3") for when in ("cold", "warm")
    ]:
        assert re.search(rf"{re.escape(row)}.* \d+\.\d\d s +\d+\.\d\d s", proc.stdout), (row, proc.stdout)
    assert "faster than cold" in proc.stdout and "target: warm <= 1.0 s" in proc.stdout
