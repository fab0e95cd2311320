"""zoo: a declarative model-zoo plugin system for computer vision.

`from zoo import register` is all a plugin package needs to add architectures, heads, augmentations,
transfer strategies and datasets. This module imports no torch.
"""

from zoo.registry import PLUGIN_API_VERSION, register

__version__ = "0.1.0"
__all__ = ["register", "PLUGIN_API_VERSION", "__version__"]
