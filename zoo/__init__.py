"""zoo: a declarative model-zoo plugin system for computer vision.

`from zoo import register` is all a plugin package needs to add architectures, heads, augmentations,
transfer strategies and datasets; `Range` and `Length` declare its parameters' bounds, `ZooError` is the one
error a user sees (raise it to reject a value), `load_weights(model, source, include_head=...)` loads weights
for a transfer strategy, and `zoo.testing.check_plugin` is a package's own test. This module imports no
torch: `load_weights` is imported on first use.
"""

from typing import Any

from zoo import discovery  # installs the registry's plugin loader
from zoo.errors import ZooError
from zoo.registry import PLUGIN_API_VERSION, Length, PluginError, Range, register

__version__ = "0.1.0"
__all__ = [
    "register",
    "Range",
    "Length",
    "ZooError",
    "PluginError",
    "PLUGIN_API_VERSION",
    "load_weights",
    "__version__",
    "discovery",
]


def __getattr__(name: str) -> Any:
    """`zoo.load_weights` (zoo.checkpoint's, which imports torch) only when it is asked for."""
    if name == "load_weights":
        from zoo.checkpoint import load_weights

        return load_weights
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
