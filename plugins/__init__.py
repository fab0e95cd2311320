"""zoo's standard plugins, registered through the `zoo.plugins` entry point like any third party's."""

from zoo_plugins.architectures import classic, timm_backbones, torchvision_models  # noqa: F401
from zoo_plugins.augmentations import geometric, mixing, photometric  # noqa: F401
from zoo_plugins.datasets import (  # noqa: F401
    arrays,
    coco,
    csv_table,
    digits,
    dogs_vs_cats,
    folder,
    glyphs,
    masks,
    multiband,
    shapes,
    shards,
    torchvision_sets,
    voc,
    yolo,
)
from zoo_plugins.heads import classification, detection, fpn, regression, unet  # noqa: F401
from zoo_plugins.interpretation import adversarial, attribution, embeddings, inspection  # noqa: F401
from zoo_plugins.transfer import strategies  # noqa: F401
