"""`zoo verify EXPORT_DIR`: an export's golden vectors through this machine's runtime; one line per failure."""

from __future__ import annotations

import sys

from zoo.errors import ZooError
from zoo.verbs import Verb

VERB = Verb(
    "verify",
    "check an export against its golden vectors (one line per failure)",
    positionals=(("EXPORT_DIR", "a folder zoo export wrote"),),
    examples=("zoo verify exports/lenet",),
)


def run(args: list[str]) -> int:
    """Exit 2 when a golden sample's outputs differ here."""
    if len(args) != 1 or "=" in args[0]:
        raise ZooError("zoo verify needs one export folder, e.g. zoo verify exports/demo")
    from zoo.deploy.verify import verify  # lazy: onnxruntime, only once the argument is valid

    failures, checked = verify(args[0])
    for f in failures:
        print(f"zoo: verify: {f}", file=sys.stderr)
    print(f"{checked} golden sample(s) checked, {len(failures)} failure(s)")
    return 2 if failures else 0
