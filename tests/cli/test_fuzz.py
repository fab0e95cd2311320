"""The fuzz suite (issue 16): generated command lines, option values, image and CSV files, checkpoints, configs
and paths against the CLI, as a careless or hostile user would give them.

The contract every case is held to: exit code 0 (valid input) or 2 (bad input); on 2, exactly one line on
stderr starting `zoo: error:`; never a traceback; no hang (each case runs under a time limit); no value outside
its declared range accepted (the expected answer is computed here from the declaration, not asked of zoo);
nothing left on disk by a refused command; the user's own files untouched.

Each case drives the CLI's main() in this process (tests/conftest.py's zoo_in_process): cheap enough for
hundreds of cases. Cases that need Hydra's composition (about a tenth of a second each) are fewer than those
that do not. CI runs the `ci` profile (fixed seed, the counts in QUOTA: >= 500 cases); `make fuzz` runs the
`nightly` profile (ZOO_FUZZ=nightly: random, 20x the cases; ZOO_FUZZ=explore: the same without shrinking a
failure, to find one fast). Each test records its count (`fuzz_cases`), which the terminal summary adds up.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import shutil
import signal
import string
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from tests.conftest import zoo_in_process

PROFILE = os.environ.get("ZOO_FUZZ", "ci")
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True
)
settings.register_profile("nightly", database=None, deadline=None, suppress_health_check=list(HealthCheck))
# a quick look for failures: report the first one found as it is, without shrinking it
settings.register_profile(
    "explore",
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
    report_multiple_bugs=False,
)
SCALE = 20 if PROFILE in ("nightly", "explore") else 1
CASE_SECONDS = 60  # a case that takes longer hangs
# generated cases per test in CI: cheap families (no composition) get most of them
QUOTA = {
    "command_lines": 100,
    "predict": 90,
    "checkpoints": 122,
    "paths": 50,
    "values": 16,
    "configs": 10,
    "hydra_and_folders": 10,
    "data_files": 14,
    # issue 25's families: Hydra's flags together, empty values, numbers for bools, counts <= 0, Unicode folders
    "flag_combos": 60,
    "empty_values": 9,
    "numeric_booleans": 9,
    "non_positive_counts": 9,
    "unicode_paths": 16,
}
COUNTS: dict[str, int] = dict.fromkeys(QUOTA, 0)


def profile(family: str):
    return settings(settings.get_profile(PROFILE), max_examples=QUOTA[family] * SCALE)


class Hang(BaseException):
    """A case ran past CASE_SECONDS (a BaseException, so no `except Exception` in zoo swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    def alarm(*_):
        raise Hang(f"no answer after {seconds}s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(d: Path) -> dict:
    """Every path under `d` with its bytes (None for a folder)."""
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None) for p in sorted(d.rglob("*"))}


def run(family: str, args: list[str], cwd: Path, expect: int | None = None, per_file: bool = False):
    """One case: the CLI in this process, under the time limit, held to the contract; with `expect`, to that exit
    code too. A refused command must leave `cwd` as it was. `per_file`: a command over a folder (zoo predict)
    reports each bad file on a line of its own, so each line is one such error."""
    before = snapshot(cwd)
    with time_limit(CASE_SECONDS), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # what a real process prints on stderr: Python's default filters
        for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=quiet)
        proc = zoo_in_process(*args, cwd=cwd)
    shown = "".join(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}\n" for w in caught)
    proc.stderr = shown + proc.stderr
    COUNTS[family] += 1
    said = f"zoo {' '.join(args)!r} -> {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stdout + proc.stderr, said
    assert proc.returncode in (0, 2), said
    if proc.returncode == 2:
        lines = proc.stderr.splitlines()
        assert (len(lines) == 1 or per_file) and lines, said
        assert all(line.startswith("zoo: error: ") and len(line) > 20 for line in lines), said
        assert snapshot(cwd) == before, f"a refused command left files behind: {said}"
    if expect is not None:
        assert proc.returncode == expect, said
    return proc


def workspace(base: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=base))


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def record(record_property, family: str) -> None:
    assert COUNTS[family] >= QUOTA[family] * SCALE * 0.9, (family, COUNTS[family])
    record_property("fuzz_cases", COUNTS[family])
    print(f"fuzz {family}: {COUNTS[family]} cases")


def test_the_quotas_add_up_to_at_least_500_cases():
    assert sum(QUOTA.values()) >= 500


# ---- strategies ------------------------------------------------------------------------------

NAMES = st.text(alphabet=string.ascii_letters + string.digits + "_", min_size=1, max_size=12)
ODD_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30
)
SPECIAL = [0, 1, -1, 2, 2**31, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**23, 10**400]
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 0.0, -0.0, 0.5, 0.999999, 1.0, 1.000001]
NUMBERS = st.one_of(
    st.sampled_from(SPECIAL),
    st.sampled_from(SPECIAL_FLOATS),
    st.integers(-(2**70), 2**70),
    st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-2, 2),
)


def hydra_text(v) -> str:
    """A number as a Hydra override writes it."""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    return str(v)


def valid_number(p, v) -> bool:
    """The declaration's own answer: is `v` a value of parameter `p` (its type, int64, finite, its Range)?"""
    if p.base is int:
        if not isinstance(v, int) or not -(2**63) <= v < 2**63:
            return False
    elif p.base is float:
        try:
            v = float(v)
        except OverflowError:
            return False
        if not math.isfinite(v):
            return False
    else:
        return False
    return p.range is None or p.range.contains(v)


def _numeric_params() -> list[tuple[str, object]]:
    """(key, Param) for every number the default experiment takes: trainer, export, and the default plugins."""
    from zoo.plugin import registry
    from zoo.train.config import schema_params
    from zoo.train.schemas import STRUCTURED

    out = [(f"{node}.{n}", p) for node, s in STRUCTURED.items() for n, p in schema_params(s).items()]
    for group, kind, name in (("model", "architecture", "cnn"), ("head", "head", "classification")):
        out += [(f"{group}.{p.name}", p) for p in registry.get(kind, name).params if not p.is_list]
    for op in ("shift", "rotation"):
        out += [(f"aug.ops.{op}.{p.name}", p) for p in registry.get("augmentation", op).params if not p.is_list]
    return [(k, p) for k, p in out if p.base in (int, float) and not p.choices]


NUMERIC = _numeric_params()


# ---- values and keys: through composition (zoo train --cfg job) --------------------------------


@given(
    case=st.one_of(
        st.tuples(st.just("number"), st.sampled_from(range(len(NUMERIC))), NUMBERS),
        st.tuples(st.just("seed"), st.just(0), st.one_of(st.sampled_from(SPECIAL), st.integers(-(2**66), 2**66))),
        st.tuples(st.just("added"), st.sampled_from(["trainer", "export", "model", "head", "data"]), NAMES),
        st.tuples(st.just("text"), st.sampled_from(range(len(NUMERIC))), ODD_TEXT),
    )
)
@profile("values")
def fuzz_values(base, case):
    kind, which, value = case
    cwd = workspace(base)
    if kind == "number":
        key, p = NUMERIC[which]
        expect = 0 if valid_number(p, value) else 2
        add = "++" if key.startswith("aug.ops.") else ""  # a parameter the preset does not set is added
        proc = run("values", ["train", "--cfg", "job", f"{add}{key}={hydra_text(value)}"], cwd, expect)
        if expect == 2:
            assert key in proc.stderr or key.rpartition(".")[2] in proc.stderr, proc.stderr
    elif kind == "seed":
        run("values", ["train", "--cfg", "job", f"seed={value}"], cwd, 0 if 0 <= value < 2**63 else 2)
    elif kind == "added":  # a key the group's schema does not have: refused, never written and ignored
        from zoo.train.schemas import STRUCTURED

        known = {n for s in STRUCTURED.values() for n in (f.name for f in __import__("dataclasses").fields(s))}
        assume(value not in known and value not in ("name", "width", "depth", "dropout", "classes"))
        run("values", ["train", "--cfg", "job", f"+{which}.{value}=1"], cwd, 2)
    else:  # any text where a number belongs
        key, _ = NUMERIC[which]
        key = f"++{key}" if key.startswith("aug.ops.") else key
        quoted = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        run("values", ["train", "--cfg", "job", f"{key}={quoted}"], cwd, 2)
    shutil.rmtree(cwd)


@pytest.mark.slow
def test_values_outside_their_declaration_are_refused_and_inside_accepted(base, record_property):
    COUNTS["values"] = 0
    fuzz_values(base)
    record(record_property, "values")


# ---- command lines: every command, its options and flags (no composition) --------------------


def _verbs_and_keys() -> tuple[list[str], list[str]]:
    """Every verb and every key its spec declares (zoo.verbs), in order."""
    from zoo.cli import VERBS, verb_module

    words = list(VERBS)
    keys: dict[str, None] = {}
    for name in words:
        verb = verb_module(name).VERB
        for part in verb.parts or (verb,):
            keys.update(dict.fromkeys(part.option_keys()))
    return words, list(keys)


COMMAND_WORDS, OPTION_KEYS = _verbs_and_keys()
TRAIN_FLAGS = ["--experimental-rerun", "--config-path", "--config-name", "-cp", "-cn", "--bogus", "-x", "--cfg", "-p"]


def option():
    value = st.one_of(NUMBERS.map(hydra_text), ODD_TEXT, st.just(""), st.sampled_from(["auto", "cpu", "cuda", "x"]))
    return st.one_of(
        st.tuples(st.sampled_from(OPTION_KEYS), value).map(lambda kv: f"{kv[0]}={kv[1]}"),
        ODD_TEXT,
        NAMES,
    )


@given(
    command=st.one_of(st.sampled_from(COMMAND_WORDS), NAMES, ODD_TEXT),
    options=st.lists(option(), max_size=4),
    flags=st.lists(st.sampled_from(TRAIN_FLAGS), max_size=2),
    flag_values=st.lists(st.sampled_from(["job", "hydra", "none", "x.pkl", "/nonexistent", ""]), max_size=2),
)
@profile("command_lines")
def fuzz_command_lines(base, command, options, flags, flag_values):
    cwd = workspace(base)
    args = [command, *options]
    if command == "train":  # flags and their values among the overrides; -1 epochs: it never trains
        args = [command, *[x for pair in zip(flags, flag_values + ["", ""]) for x in pair], *options]
        args.append("trainer.max_epochs=-1")
    elif command == "bench":
        args = [command, "inference", *options]  # discovery and transfer benchmarks take long by design
    elif command == "augment":
        assume(not any(o.startswith("output=") for o in options))  # with an output it composes: data_files
    elif command == "list":
        args = [command, *[o for o in options if "=" not in o][:2]]
    proc = run("command_lines", args, cwd)
    if proc.returncode == 0:  # they need files no case gives
        assert command not in ("export", "predict", "verify", "report", "bench", "augment", "explain"), proc
    shutil.rmtree(cwd)


def test_any_command_line_is_answered_in_one_line(base, record_property):
    COUNTS["command_lines"] = 0
    fuzz_command_lines(base)
    record(record_property, "command_lines")


# ---- predict: options and image files ----------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a few bytes of data: what a decompression bomb looks like."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@st.composite
def image_file(draw) -> tuple[str, bytes]:
    """A file in a folder of images: a real image, a truncated or corrupted one, a bomb, or not an image."""
    from PIL import Image

    kind = draw(st.sampled_from(["image", "image", "truncated", "flipped", "bomb", "garbage", "empty"]))
    ext = draw(st.sampled_from([".png", ".jpg", ".bmp", ".gif", ".tiff", ".webp"]))
    if kind in ("bomb",):
        side = draw(st.sampled_from([10_000, 20_000, 100_000, 2**31 - 1]))
        return ".png", png_claiming(side, draw(st.sampled_from([side, 1])))
    if kind == "garbage":
        return ext, draw(st.binary(min_size=1, max_size=300))
    if kind == "empty":
        return ext, b""
    w, h = draw(st.integers(1, 80)), draw(st.integers(1, 80))
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16"] if ext == ".png" else ["L", "RGB"]))
    buf = io.BytesIO()
    Image.new(mode, (w, h), color=draw(st.integers(0, 255)) if mode != "RGB" else (1, 2, 3)).save(
        buf, format={"jpg": "JPEG", "tiff": "TIFF"}.get(ext[1:], ext[1:].upper())
    )
    data = buf.getvalue()
    if kind == "truncated":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif kind == "flipped":
        flipped = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            flipped[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        data = bytes(flipped)
    return ext, data


@given(
    files=st.lists(image_file(), min_size=0, max_size=4),
    topk=st.one_of(st.none(), NUMBERS.map(hydra_text), ODD_TEXT),
    batch=st.one_of(st.none(), st.sampled_from(["0", "-1", "1", "2", "32", "x", "1e3", str(2**63)])),
    providers=st.one_of(st.none(), st.sampled_from(["auto", "cpu", "gpu", "", "cuda"])),
    single=st.booleans(),
)
@profile("predict")
def fuzz_predict(base, tiny_export, files, topk, batch, providers, single):
    cwd = workspace(base)
    images = cwd / "images"
    images.mkdir()
    for i, (ext, data) in enumerate(files):
        (images / f"{i}{ext}").write_bytes(data)
    target = images / f"0{files[0][0]}" if single and files else images
    args = ["predict", f"model={tiny_export}", f"input={target}"]
    args += [f"{k}={v}" for k, v in (("topk", topk), ("batch", batch), ("providers", providers)) if v is not None]
    proc = run("predict", args, cwd, per_file=True)
    if proc.returncode == 0:
        rows = [json.loads(line) for line in proc.stdout.splitlines()]  # valid JSON (no NaN)
        assert rows and all(0.0 <= r["score"] <= 1.0 for r in rows), proc.stdout
        assert int(topk) >= 1 if topk is not None else True
        assert int(batch) >= 1 if batch is not None else True
    shutil.rmtree(cwd)


@pytest.mark.slow
def test_predict_answers_any_folder_of_files_and_options(base, tiny_export, record_property):
    COUNTS["predict"] = 0
    fuzz_predict(base, tiny_export)
    record(record_property, "predict")


# ---- checkpoints: truncated, bit-flipped, foreign ---------------------------------------------


@st.composite
def malformed(draw, original: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncated", "flipped", "flipped", "junk_after", "random", "foreign"]))
    if kind == "truncated":
        return original[: draw(st.integers(0, len(original) - 1))]
    if kind == "flipped":
        data = bytearray(original)
        for _ in range(draw(st.integers(1, 64))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if kind == "junk_after":
        return original + draw(st.binary(min_size=1, max_size=64))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(),
        NAMES,
        st.sampled_from(["zoo.train.checkpoint/1", "zoo.train.checkpoint/2", "zoo.train.checkpoint/9"]),
        st.builds(lambda n, v: torch.full((n,), v), st.integers(0, 4), st.floats(width=32)),
    )
    payload = draw(
        st.dictionaries(
            st.sampled_from(["format", "model", "config", "info", "header", "epoch", "x"]),
            st.recursive(
                leaves, lambda c: st.dictionaries(NAMES, c, max_size=3) | st.lists(c, max_size=3), max_leaves=8
            ),
            max_size=6,
        )
    )
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


@given(data=st.data(), where=st.sampled_from(["file", "run_dir"]))
@profile("checkpoints")
def fuzz_checkpoints(base, tiny_run, data, where):
    original = (tiny_run / "checkpoints" / "best.pt").read_bytes()
    mutated = data.draw(malformed(original))
    cwd = workspace(base)
    path = cwd / "x.pt" if where == "file" else cwd / "run" / "checkpoints" / "best.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mutated)
    given_path = path if where == "file" else cwd / "run"
    # opset=17 (in its declared range) is refused once the checkpoint is read, since the uint8 input needs 18: an
    # intact file gets that line, a bad one its own
    proc = run("checkpoints", ["export", f"checkpoint={given_path}", "output=out", "opset=17"], cwd, 2)
    if "export.opset=17" in proc.stderr:  # accepted: then its tensors must be the original's, bit for bit
        saved = torch.load(io.BytesIO(original), weights_only=True)["model"]
        got = torch.load(path, weights_only=True)["model"]
        assert got.keys() == saved.keys() and all(torch.equal(got[k], saved[k]) for k in saved), proc.stderr
    shutil.rmtree(cwd)


@pytest.mark.slow
def test_a_malformed_checkpoint_is_refused_in_one_line(base, tiny_run, record_property):
    COUNTS["checkpoints"] = 0
    fuzz_checkpoints(base, tiny_run)
    record(record_property, "checkpoints")


# ---- paths: over-long names, a file where a folder belongs, a folder where a file belongs ------


@given(
    command=st.sampled_from(
        [
            ("export", "checkpoint"),
            ("predict", "model"),
            ("predict", "input"),
            ("report", None),
            ("explain", "run"),
            ("explain", "checkpoint"),
            ("new-plugin", "output"),
            ("train", "--config-dir"),
        ]
    ),
    shape=st.sampled_from(["long_name", "long_path", "through_a_file", "folder_for_file", "missing"]),
    length=st.integers(256, 5000),
)
@profile("paths")
def fuzz_paths(base, tiny_export, command, shape, length):
    cwd = workspace(base)
    (cwd / "afile").write_text("x")
    (cwd / "adir").mkdir()
    path = {
        "long_name": str(cwd / ("n" * length)),
        "long_path": str(cwd / "/".join(["d" * 200] * (length // 200 + 21))),
        "through_a_file": str(cwd / "afile" / "x.pt"),
        "folder_for_file": str(cwd / "adir"),
        "missing": str(cwd / "nothing" / "here"),
    }[shape]
    name, key = command
    if name == "report":
        args = ["report", path]
    elif name == "explain":
        args = ["explain", "gradcam", f"{key}={path}", f"output={cwd / 'out'}"]
    elif name == "new-plugin":
        assume(shape not in ("missing", "folder_for_file"))  # there it writes a package: fine, not a hostile path
        args = ["new-plugin", "acme", f"output={path}"]
    elif key == "--config-dir":
        assume(shape != "folder_for_file")  # a folder is what it takes
        args = ["train", "--config-dir", path, "--cfg", "job"]
    elif name == "predict":
        other = "input=" + str(cwd / "adir") if key == "model" else f"model={tiny_export}"
        args = ["predict", f"{key}={path}", other]
    else:
        args = [name, f"{key}={path}"]
    run("paths", args, cwd, 2)
    shutil.rmtree(cwd)


def test_a_hostile_path_in_any_argument_is_one_line(base, tiny_export, record_property):
    COUNTS["paths"] = 0
    fuzz_paths(base, tiny_export)
    record(record_property, "paths")


# ---- configs: a user's config folder with generated experiments --------------------------------

YAML_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.floats(), NAMES, ODD_TEXT)
YAML_KEYS = st.sampled_from(["trainer", "model", "data", "head", "aug", "seed", "lr", "width", "ops", "defaults"])


@given(
    content=st.one_of(
        st.recursive(
            YAML_LEAVES,
            lambda c: st.dictionaries(YAML_KEYS | NAMES, c, max_size=3) | st.lists(c, max_size=3),
            max_leaves=8,
        ).map(lambda v: __import__("yaml").safe_dump(v)),
        ODD_TEXT,
        st.sampled_from(
            ["defaults:\n  - config\n", "defaults: [nope]\n", ": :\n", "a: ${nope}\n", "a: !!python/x 1\n"]
        ),
    ),
    header=st.sampled_from(["# @package _global_\n", "", "# @package trainer\n"]),
    primary=st.booleans(),
)
@profile("configs")
def fuzz_configs(base, content, header, primary):
    cwd = workspace(base)
    (cwd / "conf" / "experiment").mkdir(parents=True)
    (cwd / "conf" / "experiment" / "mine.yaml").write_text(header + content)
    if primary:  # a primary config.yaml of the user's never replaces zoo's
        (cwd / "conf" / "config.yaml").write_text("seed: 12345\n")
    proc = run("configs", ["train", "--cfg", "job", "--config-dir", str(cwd / "conf"), "experiment=mine"], cwd)
    if proc.returncode == 0:
        assert "name: " in proc.stdout and "seed: 12345" not in proc.stdout
    shutil.rmtree(cwd)


@pytest.mark.slow
def test_a_config_folder_holding_anything_is_one_line_or_composes(base, record_property):
    COUNTS["configs"] = 0
    fuzz_configs(base)
    record(record_property, "configs")


# ---- code named by config, and the user's folder ----------------------------------------------


@given(
    target=st.one_of(
        st.sampled_from(["builtins.open", "os.system", "subprocess.run", "shutil.rmtree", "pathlib.Path.touch"]),
        st.tuples(NAMES, NAMES).map(".".join),
    ),
    where=st.sampled_from(["callbacks", "launcher", "sweeper"]),
    files=st.dictionaries(
        st.sampled_from(["config.yaml", "notes.txt", "train.log", "metrics.json", ".hydra", "data.csv", "x.pt"]),
        st.binary(max_size=32),
        max_size=4,
    ),
)
@profile("hydra_and_folders")
def fuzz_hydra_and_folders(base, target, where, files):
    assume(target.split(".")[0] not in ("hydra", "hydra_plugins", "zoo", "zoo_plugins"))
    cwd = workspace(base)
    mine = cwd / "mine"
    mine.mkdir()
    for name, data in files.items():
        (mine / name).write_bytes(data)
    marker = cwd / "marker"
    if where == "callbacks":
        named = [
            f"+hydra.callbacks.x._target_={target}",
            f"+hydra.callbacks.x.file={marker}",
            "+hydra.callbacks.x.mode=w",
        ]
    else:
        named = [f"hydra.{where}._target_={target}"]
    before = snapshot(mine)
    run("hydra_and_folders", ["train", *named, f"hydra.run.dir={mine}", "trainer.max_epochs=1"], cwd, 2)
    assert not marker.exists() and snapshot(mine) == before
    shutil.rmtree(cwd)


@pytest.mark.slow
def test_no_code_named_by_a_config_runs_and_the_users_folder_stays(base, record_property):
    COUNTS["hydra_and_folders"] = 0
    fuzz_hydra_and_folders(base)
    record(record_property, "hydra_and_folders")


# ---- data files: image folders and CSV tables -------------------------------------------------


@given(
    layout=st.dictionaries(NAMES, st.lists(image_file(), max_size=3), max_size=3),
    table=st.lists(
        st.tuples(st.one_of(NAMES, st.just("0.png"), ODD_TEXT), st.one_of(NUMBERS.map(hydra_text), ODD_TEXT)),
        max_size=4,
    ),
    which=st.sampled_from(["folder", "csv"]),
)
@profile("data_files")
def fuzz_data_files(base, layout, table, which):
    cwd = workspace(base)
    root = cwd / "data"
    root.mkdir()
    for cls, images in layout.items():
        (root / cls).mkdir(exist_ok=True)
        for i, (ext, data) in enumerate(images):
            (root / cls / f"{i}{ext}").write_bytes(data)
    if which == "csv":
        import csv

        from PIL import Image

        Image.new("L", (8, 8), 7).save(root / "0.png")
        with open(root / "t.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", "target"])
            w.writerows(table)
        data = ["data=csv", f"data.file={root / 't.csv'}", "data.size=8", "head=regression"]
    else:
        data = ["data=folder", f"data.root={root}", "data.size=8"]
    proc = run("data_files", ["augment", "output=grid.png", "samples=2", "variants=1", *data], cwd)
    if proc.returncode == 0:
        assert (cwd / "grid.png").is_file()
    shutil.rmtree(cwd)


@pytest.mark.slow
def test_data_files_of_any_shape_are_read_or_refused_in_one_line(base, record_property):
    COUNTS["data_files"] = 0
    fuzz_data_files(base)
    record(record_property, "data_files")


from tests.cli.fuzz_edges import (  # noqa: E402  (issue 25's families, after the helpers they use)
    fuzz_empty_values,
    fuzz_flag_combos,
    fuzz_non_positive_counts,
    fuzz_numeric_booleans,
    fuzz_unicode_paths,
)


def test_hydra_flags_alone_and_together_work_or_are_one_line(base, record_property):
    COUNTS["flag_combos"] = 0
    fuzz_flag_combos(base)
    record(record_property, "flag_combos")


@pytest.mark.slow
@pytest.mark.parametrize(
    "family, fuzz",
    [
        ("empty_values", fuzz_empty_values),
        ("numeric_booleans", fuzz_numeric_booleans),
        ("non_positive_counts", fuzz_non_positive_counts),
        ("unicode_paths", fuzz_unicode_paths),
    ],
)
def test_declared_edges_are_checked_at_cfg_job_as_at_run_time(base, tiny_export, record_property, family, fuzz):
    COUNTS[family] = 0
    fuzz(base, tiny_export) if family == "unicode_paths" else fuzz(base)
    record(record_property, family)


def test_fuzz_helpers_catch_what_they_should(base):
    # the oracle itself: a traceback, two lines or a wrong exit code fail a case; a hang is stopped
    with pytest.raises(Hang), time_limit(0.2):
        while True:
            random.random()
    assert not valid_number(dict(NUMERIC)["trainer.lr"], math.nan)
    assert valid_number(dict(NUMERIC)["trainer.lr"], 1e-3) and not valid_number(dict(NUMERIC)["trainer.lr"], 0)
    assert not valid_number(dict(NUMERIC)["trainer.max_epochs"], 2**63)
