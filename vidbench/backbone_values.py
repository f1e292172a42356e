"""The backbones' names and the values a config writes per backbone, without torch: the report steps
(aggregate, tables, plots, claims) and the workflow's own process read them, and importing torch would
add about a second to each."""
from __future__ import annotations

BACKBONES = ("resnet18", "resnet50", "resnet_tiny")   # vidbench.backbones builds each of them


def per_backbone(value, backbone: str):
    """A value written per backbone, {resnet18: v, resnet50: v, default: v}, -> this backbone's v
    (the `default` entry, else None, when the backbone is not listed); other values unchanged."""
    if isinstance(value, dict) and value and set(value) <= set(BACKBONES) | {"default"}:
        return value.get(backbone, value.get("default"))
    return value
