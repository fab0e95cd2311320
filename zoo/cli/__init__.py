"""The `zoo` command: dispatch to its verbs.

Each verb is a module with `VERB` (its zoo.verbs.Verb: options, help, usage line) and `run(args) -> int`:
train, export, predict (zoo.runtime.predict, also the runtime-only wheel's `zoo-predict`), verify, list, bench,
report, augment, explain, summary, new-plugin, doctor. `zoo --help` is generated from their specs and
`zoo VERB --help` is the verb's own. A verb's module is imported when the verb runs, and heavy libraries
(torch, hydra, onnxruntime) only inside a verb's work, so `zoo list` and `zoo --help` answer fast. A failure is
one line on stderr (exit 2 for bad input, 3 for a bug): zoo.verbs.answer.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from zoo.errors import close_matches
from zoo.verbs import run_verb, top_usage
from zoo.version import __version__

# verb -> its module; a new verb is its module and one line here
VERBS = {
    "train": "zoo.cli.train",
    "export": "zoo.cli.export",
    "predict": "zoo.runtime.predict",
    "verify": "zoo.cli.verify",
    "list": "zoo.cli.list_plugins",
    "bench": "zoo.cli.bench",
    "report": "zoo.cli.report",
    "augment": "zoo.cli.augment",
    "explain": "zoo.cli.explain",
    "new-plugin": "zoo.cli.new_plugin",
    "doctor": "zoo.cli.doctor",
    "summary": "zoo.cli.summary",
    "data": "zoo.cli.data",
}
EXAMPLE = "zoo train data=digits model=lenet5 head.dropout=0.2 trainer.max_epochs=10 hydra.run.dir=runs/lenet"


def verb_module(name: str) -> ModuleType:
    """The module of verb `name` (its VERB and run)."""
    return importlib.import_module(VERBS[name])


def usage() -> str:
    """What `zoo` and `zoo --help` print, from every verb's spec."""
    return top_usage((verb_module(name).VERB for name in VERBS), EXAMPLE)


def main(argv: list[str] | None = None) -> int:
    """The `zoo` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):
        print(f"zoo {__version__}")
        return 0
    if argv[0] not in VERBS:
        hint = close_matches(argv[0], VERBS)
        print(
            f"zoo: error: unknown command {argv[0]!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
            + " see: zoo --help",
            file=sys.stderr,
        )
        return 2
    module = verb_module(argv[0])
    return run_verb(module.VERB, module.run, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
