"""The fuzz suite's families for issue 25 (run by tests/cli/test_fuzz.py, which holds the quotas and the contract):
Hydra's flags alone and in pairs, empty values, numbers where a bool belongs, counts <= 0, and folder names in
Czech, Cyrillic and Polish letters. Each oracle is written here, independent of zoo's declarations: a count is
at least 1 whatever its declaration says, so a declaration that loses its range fails the family. Explicit
examples run in every profile, so a broken declaration is found whatever the generated cases are.
"""

from __future__ import annotations

import json
import shutil

from hypothesis import assume, example, given
from hypothesis import strategies as st

from tests.cli.test_fuzz import profile, run, workspace

# ---- Hydra's flags ---------------------------------------------------------------------------------------------

FLAGS = [
    ("-m",),
    *[("--cfg", v) for v in ("job", "hydra", "all", "x")],
    ("--info",),
    *[("--info", v) for v in ("defaults", "searchpath", "x")],
    ("-sc",),
    ("--resolve",),
    *[("--package", v) for v in ("trainer.lr", "hydra.run", "_global_", "nope", "..x")],
    ("-cp", "x"),
    ("-cn", "x"),
    ("--experimental-rerun", "x.pkl"),
]
MODES = ("-m", "--cfg", "--info", "-sc")
LONG = {"-sc": "--shell-completion", "-cp": "--config-path", "-cn": "--config-name"}  # how a line names them


def flags_expected(flags: list[tuple[str, ...]]) -> int | None:
    """Hydra's rules for its flags (hydra/_internal/utils.py run_hydra), with zoo's refusals (another config, a
    pickled rerun): 0, 2, or None for a command that would start Hydra's app (not generated here)."""
    given_ = {f[0]: (f[1] if len(f) > 1 else None) for f in flags}
    if {"-cp", "-cn", "--experimental-rerun"} & given_.keys() or "x" in (given_.get("--cfg"), given_.get("--info")):
        return 2
    cfg = given_.get("--cfg")
    if (
        sum(m in given_ for m in MODES) > 1
        or ("--resolve" in given_ and not cfg)
        or ("--package" in given_ and not cfg)
    ):
        return 2
    if "-sc" in given_:  # without install=, uninstall= or query=
        return 2
    if not cfg:
        return None
    package = given_.get("--package")
    part = {"trainer.lr": ("job", "all"), "hydra.run": ("hydra", "all"), "_global_": ("job", "hydra", "all")}
    return 0 if package is None or cfg in part.get(package, ()) else 2


@given(flags=st.lists(st.sampled_from(FLAGS), min_size=1, max_size=2, unique_by=lambda f: f[0]))
@example(flags=[("--cfg", "job"), ("--info",)])
@example(flags=[("-m",), ("-sc",)])
@example(flags=[("--cfg", "job"), ("--package", "..x")])
@profile("flag_combos")
def fuzz_flag_combos(base, flags):
    expect = flags_expected(flags)
    assume(expect is not None)
    cwd = workspace(base)
    args = ["train", *[t for f in flags for t in f], f"hydra.run.dir={cwd / 'run'}"]
    proc = run("flag_combos", args, cwd, expect)
    if expect == 2:  # the line names a flag it was given (or argparse's `argument -X`)
        assert any(LONG.get(f[0], f[0]) in proc.stderr for f in flags), proc.stderr
    else:
        assert proc.stdout.strip(), proc
    shutil.rmtree(cwd)


# ---- declared values: --cfg job says what the run says --------------------------------------------------------


def same_at_run_time(family: str, overrides: list[str], cwd, refused_line: str) -> None:
    """The run (no --cfg) refuses the same overrides with the same line, before it writes anything."""
    proc = run(family, ["train", *overrides, f"hydra.run.dir={cwd / 'run'}"], cwd, 2)
    assert proc.stderr == refused_line, (proc.stderr, refused_line)


EMPTY_REFUSED = [  # settings where an empty value means nothing (a name, a source, a choice, a mapping)
    "trainer.monitor",
    "transfer.weights",
    "aug.ops",
    "trainer.optimizer",
    "trainer.device",
    "trainer.logger",
    "trainer.num_workers",
    "export.input",
    "export.precision",
    "head.pool",
]
TRANSFERS = ["scratch", "pretrained", "frozen", "finetune", "feature_extraction"]


@given(
    key=st.sampled_from(EMPTY_REFUSED),
    empty=st.sampled_from(["", "''", "' '", '""']),
    transfer=st.sampled_from(TRANSFERS),
)
@example(key="trainer.monitor", empty="", transfer="scratch")
@example(key="transfer.weights", empty="", transfer="finetune")
@example(key="aug.ops", empty="", transfer="scratch")
@profile("empty_values")
def fuzz_empty_values(base, key, empty, transfer):
    cwd = workspace(base)
    overrides = [f"transfer={transfer}", f"{key}={empty}"]
    proc = run("empty_values", ["train", "--cfg", "job", *overrides], cwd, 2)
    assert key in proc.stderr, proc.stderr
    same_at_run_time("empty_values", overrides, cwd, proc.stderr)
    shutil.rmtree(cwd)


BOOLS = ["trainer.resume", "trainer.progress", "trainer.compile", "trainer.channels_last", "transfer.keep_head"]


@given(
    key=st.sampled_from(BOOLS),
    value=st.sampled_from(["0", "1", "2", "-1", "0.5", "yes", "on", "'1'", "true", "false"]),
)
@example(key="trainer.resume", value="2")
@example(key="trainer.progress", value="0")
@example(key="transfer.keep_head", value="1")
@profile("numeric_booleans")
def fuzz_numeric_booleans(base, key, value):
    cwd = workspace(base)
    overrides = ["transfer=frozen", f"{key}={value}"] if key.startswith("transfer.") else [f"{key}={value}"]
    expect = 0 if value in ("true", "false") else 2
    proc = run("numeric_booleans", ["train", "--cfg", "job", *overrides], cwd, expect)
    if expect == 2:
        assert key in proc.stderr, proc.stderr
        same_at_run_time("numeric_booleans", overrides, cwd, proc.stderr)
    shutil.rmtree(cwd)


COUNTS_IN_CONFIG = [  # counts of things: each at least 1, whatever a declaration says
    "head.topk",
    "trainer.batch_size",
    "trainer.eval_batch_size",
    "trainer.devices",
    "trainer.step_size",
    "export.parity_samples",
    "export.calibration_samples",
    "model.width",
    "model.depth",
]
COUNTS_OF_VERBS = [("predict", "topk"), ("predict", "batch"), ("export", "parity_samples"), ("export", "opset")]


@given(
    where=st.one_of(st.sampled_from(COUNTS_IN_CONFIG), st.sampled_from(COUNTS_OF_VERBS)),
    value=st.sampled_from([0, -1, -5, -(2**31), 1, 3, 18, 21, 99]),
)
@example(where="head.topk", value=0)
@example(where="head.topk", value=-1)
@example(where=("export", "opset"), value=99)
@profile("non_positive_counts")
def fuzz_non_positive_counts(base, where, value):
    cwd = workspace(base)
    if isinstance(where, str):
        assume(value in (0, -1, -5, -(2**31), 1, 3))
        proc = run("non_positive_counts", ["train", "--cfg", "job", f"{where}={value}"], cwd, 2 if value < 1 else 0)
        if value < 1:
            assert f"{where}={value}" in proc.stderr, proc.stderr
            same_at_run_time("non_positive_counts", [f"{where}={value}"], cwd, proc.stderr)
    else:  # a verb's own option is checked before any file is read: a missing one is named only when it is valid
        verb, key = where
        valid = 17 <= value <= 20 if key == "opset" else value >= 1  # zoo's exporter writes opsets 17 to 20
        files = ["model=missing.onnx", "input=."] if verb == "predict" else ["checkpoint=missing.pt"]
        proc = run("non_positive_counts", [verb, *files, f"{key}={value}"], cwd, 2)
        assert (f"{key}={value}" in proc.stderr) != valid, proc.stderr
    shutil.rmtree(cwd)


# ---- Unicode folder names ---------------------------------------------------------------------------------------

LETTERS = "běhčřžýáíéůúďťňěš" + "запускпробаЖЩЮЯ" + "próbałódźąęśżćń" + "abcXYZ019_-"
UNICODE_NAMES = st.text(alphabet=LETTERS, min_size=1, max_size=16).filter(lambda n: n not in (".", ".."))


@given(name=UNICODE_NAMES, where=st.sampled_from(["hydra.run.dir", "checkpoint", "input"]))
@example(name="běh", where="hydra.run.dir")
@example(name="запуск", where="input")
@example(name="próba_łódź", where="checkpoint")
@profile("unicode_paths")
def fuzz_unicode_paths(base, tiny_export, name, where):
    assume(not name.startswith("-"))
    cwd = workspace(base)
    folder = cwd / name
    if where == "hydra.run.dir":  # composed as given: the run folder is the user's name, letter for letter
        proc = run("unicode_paths", ["train", "--cfg", "hydra", "--package", "hydra.run.dir", f"{where}={folder}"], cwd)
        assert proc.returncode == 0 and proc.stdout.strip() == str(folder), proc
    elif where == "checkpoint":  # a missing one is named as given
        proc = run("unicode_paths", ["export", f"checkpoint={folder / 'best.pt'}", f"output={cwd / name}_out"], cwd, 2)
        assert name in proc.stderr, proc.stderr
    else:  # an image in the folder is predicted, its path reported as given
        folder.mkdir()
        shutil.copy(tiny_export.parent / "golden" / "sample_0.png", folder / f"{name}.png")
        proc = run("unicode_paths", ["predict", f"model={tiny_export}", f"input={folder}", "topk=1"], cwd, 0)
        assert json.loads(proc.stdout.splitlines()[0])["file"].endswith(f"{name}.png"), proc.stdout
    shutil.rmtree(cwd)
