"""`zoo report DIR`: a sweep's metrics, mean ± std over seeds; writes DIR/report.md, report.csv, report.png."""

from __future__ import annotations

from pathlib import Path

from zoo.errors import ZooError
from zoo.verbs import Verb

VERB = Verb(
    "report",
    "a sweep's metrics, mean ± std over seeds (writes DIR/report.md, .csv, .png)",
    positionals=(("DIR", "a sweep's folder (zoo train -m)"),),
    examples=("zoo report runs/multirun/2026-11-24/10-00-00",),
)


def run(args: list[str]) -> int:
    """Write the report's files (each replaced whole) and print the table."""
    if len(args) != 1 or "=" in args[0]:
        raise ZooError("zoo report needs one sweep directory, e.g. zoo report runs/multirun/2026-11-24/10-00-00")
    from zoo.report.visual import report  # lazy: matplotlib, only once the argument is valid

    md, table = report(args[0])
    root = Path(args[0])
    for name, text in (("report.md", md), ("report.csv", table)):
        tmp = root / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(root / name)
    from zoo.report.figures import sweep_curves  # lazy: matplotlib

    picture = sweep_curves(root)
    print(md, end="")
    print(f"\nwritten: {root / 'report.md'}, {root / 'report.csv'}, {picture}")
    return 0
