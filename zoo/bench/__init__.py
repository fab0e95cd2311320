"""Benchmarks that compare side by side in one run and report ratios (never asserted in tests): one module each,
`zoo bench inference | transfer | discovery | train`; their entry points are re-exported here for the CLI.

Each entry point shares its module's name, so after this import `zoo.bench.train` (the attribute) is the function;
import a module's other names from the module itself (`from zoo.bench.train import ...`). No module here imports
torch at the top: `zoo bench discovery` stays as light as the commands it times."""

from __future__ import annotations

from zoo.bench.common import int_list
from zoo.bench.discovery import discovery, write_fake_package
from zoo.bench.inference import inference
from zoo.bench.train import train
from zoo.bench.transfer import pixel_floors, transfer

__all__ = [
    "discovery",
    "inference",
    "int_list",
    "pixel_floors",
    "train",
    "transfer",
    "write_fake_package",
]
