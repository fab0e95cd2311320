"""Transfer strategies: where the weights come from, what is frozen, and how fast each part learns."""
from __future__ import annotations

from zoo import register
from zoo.model import Transfer


class Scratch(Transfer):
    """Random initialisation; every parameter trains at the base learning rate."""


@register.transfer("scratch")
def scratch() -> Transfer:
    """Train from random initialisation: nothing loaded, nothing frozen."""
    return Scratch()
