"""zoo's standard plugins, registered through the `zoo.plugins` entry point like any third party's."""
from zoo_plugins.architectures import classic, timm_backbones  # noqa: F401
from zoo_plugins.augmentations import geometric  # noqa: F401
from zoo_plugins.datasets import digits, folder  # noqa: F401
from zoo_plugins.heads import classification  # noqa: F401
from zoo_plugins.transfer import strategies  # noqa: F401
