"""zoo: a declarative model-zoo plugin system for computer vision.

`from zoo import register` is all a plugin package needs to add architectures, heads, augmentations,
transfer strategies and datasets; `Range` and `Length` declare its parameters' bounds, `ZooError` is the one
error a user sees (raise it to reject a value), `load_weights(model, source, include_head=...)` loads weights
for a transfer strategy, and `zoo.testing.check_plugin` is a package's own test.

Importing `zoo` imports nothing else: each public name is looked up in its wing on first use (PEP 562), so
`import zoo.runtime` loads neither the plugin system nor torch, and the runtime-only distribution, which
ships no plugin system, still imports this file.
"""

import importlib
from typing import Any

from zoo.errors import ZooError
from zoo.version import PLUGIN_API_VERSION, __version__

# public name -> the module that defines it
_PUBLIC = {
    "register": "zoo.plugin.registry",
    "Range": "zoo.params",
    "Length": "zoo.params",
    "PluginError": "zoo.plugin.registry",
    "load_weights": "zoo.train.checkpoint",  # imports torch
    "discovery": "zoo.plugin",
}
__all__ = ["ZooError", "PLUGIN_API_VERSION", "__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    """A public name from its wing, imported when first asked for."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    module = importlib.import_module(_PUBLIC[name])
    return getattr(module, name)
