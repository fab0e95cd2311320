"""Every verb's help is generated from its spec (zoo.verbs.Verb) and complete: each option a verb's parser
accepts is shown in `zoo VERB --help`, and each option shown is accepted."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, zoo_in_process
from zoo.cli import VERBS, verb_module
from zoo.verbs import Verb


def specs() -> list[Verb]:
    """Every verb and every part of one (zoo bench inference, ...), except train, whose help is Hydra's."""
    verbs = [verb_module(name).VERB for name in VERBS if name != "train"]
    return [part for v in verbs for part in (v.parts or (v,))]


def shown_options(text: str) -> set[str]:
    """The `key=...` options an arguments section lists (one per line, two spaces in)."""
    section = text.partition("\narguments:\n")[2].partition("\n\n")[0]
    return {m.group(1) for m in re.finditer(r"^  ([a-z][a-z_0-9]*)=", section, re.M)}


@pytest.mark.parametrize("verb", specs(), ids=lambda v: v.name)
def test_each_option_accepted_is_shown_and_each_shown_is_accepted(verb):
    words = verb.name.split()
    proc = zoo_in_process(*words, "--help")
    assert proc.returncode == 0 and proc.stderr == "", proc
    shown = shown_options(proc.stdout)
    aliases = {a: o.name for o in verb.all_options() for a in o.aliases}
    accepted = set(verb.option_keys())
    assert shown | {a for a, name in aliases.items() if f"{a}=" in proc.stdout} == accepted, proc.stdout
    for option in verb.all_options():  # each option says what it is for, beyond its type and default
        assert option.help.strip(), (verb.name, option.name)
    for key in accepted:  # the verb's own parser takes each (a value of its type), and refuses a stranger
        option = next(o for o in verb.all_options() if key in (o.name, *o.aliases))
        value = {"N": "1", "X": "0.5", "BOOL": "true"}.get(option.form.partition("=")[2], "1")
        if option.default is not None:  # its declared default is a value of its type, range and choices
            value = str(option.default).lower() if isinstance(option.default, bool) else str(option.default)
        assert aliases.get(key, key) in verb.parse([f"{key}={value}"]), key
    if accepted and not verb.overrides:  # a verb with free arguments (OVERRIDES, PARAM=VALUE) takes any key
        first = {"new-plugin": ["acme"]}.get(verb.name, [])
        unknown = zoo_in_process(*words, *first, "notanoption=1")
        assert unknown.returncode == 2 and "unknown argument" in unknown.stderr, unknown


# train's --help is Hydra's, from Hydra's application in a subprocess: tests/cli/test_cli.py::test_hydra_flags_work
@pytest.mark.parametrize("name", [name for name in VERBS if name != "train"])
def test_every_verb_answers_help_and_minus_h_with_exit_0(name):
    for flag in ("--help", "-h"):
        proc = zoo_in_process(name, flag)
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: zoo {name}") and not proc.stderr, proc


def test_zoo_help_lists_every_verb_and_its_options():
    proc = zoo_in_process("--help")
    assert proc.returncode == 0
    for verb in [verb_module(name).VERB for name in VERBS]:
        for part in verb.parts or (verb,):
            assert f"  {part.name} " in proc.stdout or f"  {part.name}\n" in proc.stdout, part.name
            for option in part.all_options():
                assert f"{option.name}=" in proc.stdout, (part.name, option.name)
    assert zoo_in_process().returncode == 2  # no command: the usage, and exit 2


def test_a_runtime_option_reaches_predict_and_bench_inference_with_its_help():
    """A field on RuntimeOptions is an option of both verbs, with its help, with no edit in the CLI."""
    from dataclasses import fields

    from zoo.cli.bench import INFERENCE
    from zoo.runtime import RuntimeOptions
    from zoo.runtime.predict import VERB as PREDICT
    from zoo.verbs import field_help

    helps = field_help(RuntimeOptions)
    for verb in (PREDICT, INFERENCE):
        text = verb.help()
        for f in fields(RuntimeOptions):
            assert f.name in verb.option_keys() and f"  {f.name}=" in text, (verb.name, f.name)
            assert helps[f.name] and helps[f.name].split()[0] in text, (verb.name, f.name)


def test_importing_the_cli_loads_no_heavy_library():
    # `zoo --help` reads every verb's spec: none may pull in what only a verb's work needs
    libraries = ("torch", "hydra", "omegaconf", "onnxruntime", "numpy", "matplotlib")
    code = (
        "import sys, zoo.cli; from zoo.cli import usage; usage(); "
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {libraries!r}); "
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_a_new_runtime_option_needs_no_edit_in_the_cli(monkeypatch):
    """What the runtime adds to RuntimeOptions (help in field metadata or the field's comment) is a `zoo predict`
    and `zoo bench inference` option at once, shown in their help and handed to the runtime."""
    import dataclasses

    import zoo.runtime.predict as predict
    from zoo.cli.bench import INFERENCE

    @dataclasses.dataclass(frozen=True)
    class More(predict.RuntimeOptions):
        log_level: int = dataclasses.field(default=2, metadata={"help": "onnxruntime's log severity"})

    monkeypatch.setattr(predict, "RuntimeOptions", More)
    for verb in (predict.VERB, INFERENCE):
        text = verb.help()
        assert "log_level=N" in text and "onnxruntime's log severity (default: 2)" in text, text
        assert "intra-op threads" in text  # an inherited field keeps its help
        assert predict.runtime_split(verb.parse(["log_level=3", "threads=2"]))[1] == {"log_level": "3", "threads": "2"}
