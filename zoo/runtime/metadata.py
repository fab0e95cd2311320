"""zoo's metadata in an ONNX model: the `zoo.*` keys read, each output's role in the task (zoo.tasks), and the
checks the runtime makes from format.schema.json, the schema it ships: the major format version and the keys the
schema requires (the full validation, with jsonschema, is zoo.deploy.schema's, run by export and `zoo verify`)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo import tasks
from zoo.errors import ZooError

METADATA_PREFIX = "zoo."
METADATA_FORMATS = (1, 2, 3)  # the major versions of zoo's metadata this runtime reads
SCHEMA_FILE = Path(__file__).with_name("format.schema.json")  # format 3's keys (zoo.deploy.schema validates fully)


def read_metadata(props: dict[str, str]) -> dict[str, Any]:
    """zoo's metadata from an ONNX model's metadata_props (values are JSON)."""
    out = {}
    for k, v in props.items():
        if k.startswith(METADATA_PREFIX):
            try:
                out[k[len(METADATA_PREFIX) :]] = json.loads(v)
            except json.JSONDecodeError:
                out[k[len(METADATA_PREFIX) :]] = v
    return out


def output_roles(meta: dict[str, Any], graph_outputs: Sequence[str], where: str) -> dict[str, str]:
    """{role: output name} from zoo metadata. Format 2 lists each output's role; format 1 lists names only,
    matched by position to the task's roles (zoo.tasks). A major format this runtime does not know is refused."""
    fmt = meta.get("format", 1)
    try:
        major = int(str(fmt).split(".")[0])
    except ValueError:
        major = None
    if major not in METADATA_FORMATS:
        raise ZooError(
            f"{where} has zoo metadata format {fmt!r}; this zoo reads formats "
            f"{', '.join(map(str, METADATA_FORMATS))}: upgrade zoo to serve it"
        )
    task, listed = meta.get("task"), meta.get("outputs") or list(graph_outputs)
    if task not in tasks.TABLE:  # a task this zoo does not know: outputs by name only
        return {}
    if major == 1:
        return tasks.roles_by_position(task, [str(n) for n in listed], where)
    roles = {str(e["role"]): str(e["name"]) for e in listed if isinstance(e, dict) and "role" in e and "name" in e}
    for out in tasks.task(task).required:
        if out.role not in roles:
            raise ZooError(f"{where}: its metadata gives no output for the {task} role {out.role!r}")
    absent = [n for n in roles.values() if n not in graph_outputs]
    if absent:
        raise ZooError(f"{where}: its metadata names output(s) {absent} that the graph lacks ({list(graph_outputs)})")
    return roles


@functools.cache
def _required_keys() -> tuple[list[str], list[str]]:
    """The keys zoo.format's schema requires at the top and in `input`: the file is read once per process."""
    schema = json.loads(SCHEMA_FILE.read_text())
    return schema["required"], schema["$defs"]["input"]["required"]


def check_metadata(meta: dict[str, Any], where: str) -> None:
    """Format 3 and later: the keys zoo.format's schema requires, at the top and in `input` (the full check,
    with jsonschema, is zoo.deploy.schema's, run by export and `zoo verify`)."""
    if int(str(meta.get("format", 1)).split(".")[0]) < 3:
        return
    top, inputs = _required_keys()
    for keys, node, prefix in ((top, meta, "zoo."), (inputs, meta.get("input"), "zoo.input.")):
        missing = [k for k in keys if not isinstance(node, dict) or k not in node]
        if missing:
            raise ZooError(f"{where}: its zoo metadata lacks {', '.join(prefix + k for k in missing)} (zoo.format 3)")
