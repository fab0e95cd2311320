"""The plugin catalog (zoo.plugin.catalog): a warm cache answers `zoo list`, `--cfg job` and override errors without
torch or any plugin module, says what a full import says, and is rebuilt whenever what it holds may differ."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from zoo.bench import write_fake_package
from zoo.plugin import catalog, discovery, registry

# A third-party package as authors write them: torch at import, every kind of declaration zoo caches.
PACKAGE = '''ZOO_PLUGIN_API = 2
from typing import Annotated, Literal, Optional

from torch import nn

from zoo import Length, Range, register
from zoo.model import Backbone, FeatureInfo


@register.architecture("{name}", tasks=("classification",), min_size=lambda depth: 2**depth)
class Net(Backbone):
    """{summary}"""

    def __init__(
        self,
        in_channels: int,
        depth: Annotated[int, Range(1, 6)] = 2,
        act: Literal["relu", "gelu"] = "relu",
        widths: Annotated[list[Annotated[int, Range(1)]], Length(min=1, max=4)] = (8,),
        scale: Optional[Annotated[float, Range(0, 1, min_exclusive=True)]] = None,
    ):
        super().__init__()
        self.body = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.feature_info = [FeatureInfo(widths[0], 1)]

    def forward(self, x):
        return [self.body(x)]

    def stages(self):
        return [self.body]


@register.augmentation("hflip")  # a standard name: one warning, replayed from the cache
def op(info, p: Annotated[float, Range(0, 1)] = 0.5) -> object:
    """An op that shares a standard plugin's name."""
    return None
'''

# zoo commands through main() in one fresh interpreter, then which heavy modules it imported
_SCRIPT = """
import contextlib, io, json, sys
from zoo.cli import main
results = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    results.append([code, out.getvalue(), err.getvalue()])
heavy = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "timm")})
plugins = sorted(m for m in sys.modules if m.startswith(("zoo_plugins", "zoo_lab")))
print(json.dumps({"results": results, "heavy": heavy, "plugins": plugins}))
"""

LIST = [["list"], ["list", "architecture", "lab_net"], ["list", "augmentation"], ["list", "architecture", "cnn"]]
ERRORS = [
    (["train", "model.widht=3"], "unknown config key 'model.widht'; did you mean 'model.width'"),
    (["train", "model=lab_net", "model.depth=9"], "model.depth=9 must be in [1, 6]"),
    (["train", "model=lab_nett"], "unknown model 'lab_nett'; did you mean 'lab_net'"),
    (["train", "model=lab_net", "model.act=gelo"], "model.act='gelo' is not one of: relu, gelu; did you mean 'gelu'"),
    (["train", "aug.ops.shift.bogus=1"], "unknown key 'aug.ops.shift.bogus' for augmentation 'shift'"),
]


def _zoo(calls: list[list[str]], site: Path, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(site), catalog.CACHE_ENV: str(cache)}
    env.pop(discovery.AUTOLOAD_ENV, None)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(calls)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def _lab(site: Path, module: str, name: str, summary: str = "A lab network.") -> None:
    write_fake_package(site, module.replace("_", "-"), module, PACKAGE.format(name=name, summary=summary))


@pytest.mark.slow
def test_a_warm_cache_answers_like_a_full_import_without_torch_or_any_plugin_module_until_a_package_changes(tmp_path):
    site, cache = tmp_path / "site", tmp_path / "cache"
    _lab(site, "zoo_lab", "lab_net")
    cold = _zoo(LIST, site, cache)  # nothing cached: every plugin package imported, the cache written
    assert cold["heavy"] and "zoo_lab" in cold["plugins"]
    assert len(list(cache.glob("plugins-*.json"))) == 1
    cfg_job = ["train", "--cfg", "job", "model=lab_net", "model.depth=3"]
    warm = _zoo([*LIST, cfg_job, *(e[0] for e in ERRORS)], site, cache)
    assert warm["heavy"] == [] and warm["plugins"] == [], (warm["heavy"], warm["plugins"])
    assert warm["results"][: len(LIST)] == cold["results"]  # the listing, the details and the warning, as imported
    assert "'zoo-lab' registers augmentation 'hflip'" in warm["results"][0][2]
    assert "min input size: 4x4" in warm["results"][1][1] and "int in [1, 6]" in warm["results"][1][1]
    code, out, _ = warm["results"][len(LIST)]
    assert code == 0 and "name: lab_net" in out and "depth: 3" in out
    for (code, _, err), (_, expected) in zip(warm["results"][len(LIST) + 1 :], ERRORS):
        assert code == 2 and err.count("\n") == 1 and expected in err, err
    # pip uninstall of the package and pip install of another: the cache is rebuilt, not served
    shutil.rmtree(next(site.glob("zoo_lab-*.dist-info")))
    (site / "zoo_lab.py").unlink()
    _lab(site, "zoo_lab2", "lab_net2")
    after = _zoo([["list", "architecture"]], site, cache)
    assert after["heavy"] and "lab_net2" in after["results"][0][1] and "lab_net " not in after["results"][0][1]


def test_a_corrupt_cache_is_rebuilt_silently(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(catalog.CACHE_ENV, str(tmp_path))
    path = catalog.cache_file()
    path.write_text('{"format": 1, "fingerp')
    imports = []
    monkeypatch.setattr(discovery, "discovered", lambda: False)  # as in a new process ...
    monkeypatch.setattr(discovery, "discover", lambda: imports.append(1))  # ... whose imports this one made
    assert catalog.serve() is False and imports == [1]
    assert capsys.readouterr().err == ""
    plugins, data = catalog.read(path)
    packages = {p.package for p in discovery.loaded}
    everything = [p for kind in registry.KINDS for p in registry.registries[kind]]
    expected = {(p.kind, p.name, p.package) for p in everything if p.package in packages}
    assert {(p.kind, p.name, p.package) for p in plugins} == expected
    assert data["packages"] == discovery.loaded
    assert catalog.serve(refresh=True) is False and imports == [1, 1]  # zoo list --refresh: rebuilt, not read
    broken = json.loads(path.read_text())
    broken["plugins"][0]["kind"] = "gadget"
    path.write_text(json.dumps(broken))
    assert catalog.read(path) is None


def test_the_fingerprint_sees_installs_uninstalls_source_edits_and_the_autoload_switch(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _lab(site, "zoo_lab", "lab_net")
    monkeypatch.syspath_prepend(str(site))
    roots = catalog.source_roots()
    assert str(site / "zoo_lab.py") in roots and str(Path(catalog.__file__).parents[1]) in roots
    first = catalog.fingerprint(roots)
    assert catalog.fingerprint(roots) == first  # stable while nothing changes
    (site / "zoo_lab.py").write_text(PACKAGE.format(name="lab_net", summary="An edited summary, longer."))
    edited = catalog.fingerprint(roots)
    write_fake_package(site, "zoo-other", "zoo_other", "ZOO_PLUGIN_API = 2\n")
    installed = catalog.fingerprint(roots)
    shutil.rmtree(next(site.glob("zoo_other-*.dist-info")))
    uninstalled = catalog.fingerprint(roots)
    monkeypatch.setenv(discovery.AUTOLOAD_ENV, "1")
    no_autoload = catalog.fingerprint(roots)
    assert len({first, edited, installed, no_autoload}) == 4
    assert uninstalled == edited  # what is installed is what it was before the install


def test_every_plugin_round_trips_through_its_cached_record():
    for kind in registry.KINDS:
        for plugin in registry.registries[kind]:
            record = catalog.plugin_from(json.loads(json.dumps(catalog.plugin_record(plugin))))
            assert record.cached and record.factory is None
            for name in ("kind", "name", "summary", "package", "module", "entry_point", "context", "tasks"):
                assert getattr(record, name) == getattr(plugin, name), (plugin.qualified_name, name)
            assert record.qualified_names == plugin.qualified_names
            assert [(p.name, p.describe(), p.default, p.base) for p in record.params] == [
                (p.name, p.describe(), p.default, p.base) for p in plugin.params
            ], plugin.qualified_name
            assert record.min_size() == plugin.min_size()
            assert record.resolve() is plugin  # its code: the registered plugin itself


def test_a_cache_that_does_not_hold_is_not_read_and_an_unwritable_folder_means_no_cache(tmp_path, monkeypatch):
    path = tmp_path / "plugins-x.json"
    for text in ["", "[]", '{"format": 1}', json.dumps({"format": 1, "fingerprint": "0", "roots": []})]:
        path.write_text(text)
        assert catalog.read(path) is None
    monkeypatch.setenv(catalog.CACHE_ENV, str(tmp_path / "cache"))
    assert catalog.cache_file().parent == tmp_path / "cache"
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    catalog.write(blocked / "plugins-x.json", {"format": 1})  # nothing raised, nothing written
    catalog.write(tmp_path / "cache" / "plugins-x.json", {"format": 1})
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["plugins-x.json"]  # no temporary file left


@pytest.mark.parametrize("variable", ["ZOO_CACHE_DIR", "XDG_CACHE_HOME"])
def test_the_cache_lives_in_the_user_cache_folder(variable, tmp_path, monkeypatch):
    monkeypatch.delenv(catalog.CACHE_ENV, raising=False)
    monkeypatch.setenv(variable, str(tmp_path))
    assert catalog.cache_dir() == (tmp_path if variable == catalog.CACHE_ENV else tmp_path / "zoo")
