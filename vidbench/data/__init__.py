"""Data layer: synthetic datasets (`synth`), official-layout indexing (`prepare`) and the clip loader.

The loader names are imported lazily so that `vidbench synth` / `vidbench prepare` do not import torch.
"""
from __future__ import annotations

_LAZY = {
    "ClipDataset": "vidbench.data.dataset",
    "build_loader": "vidbench.data.dataset",
    "collate_skip": "vidbench.data.dataset",
    "num_classes": "vidbench.data.dataset",
    "class_names": "vidbench.data.dataset",
    "sample_indices": "vidbench.data.dataset",
    "generate": "vidbench.data.synth",
    "prepare": "vidbench.data.prepare",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vidbench.data' has no attribute {name!r}")
