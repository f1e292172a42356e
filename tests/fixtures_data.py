"""Helpers for the data tests: tiny synthetic datasets, generated once per test session."""
from __future__ import annotations

import shutil
from pathlib import Path

from vidbench.data.synth import generate

TRAIN_PER_CLASS = 2
VAL_PER_CLASS = 1
_ROOTS: dict[str, Path] = {}


def tiny_root(fmt: str, tmp_path_factory) -> Path:
    """A tiny synthetic dataset of `fmt` (2 train / 1 val per class); shared, do not modify it."""
    if fmt not in _ROOTS or not (_ROOTS[fmt] / ".complete").exists():
        root = tmp_path_factory.mktemp(f"tiny-{fmt}") / fmt
        generate(fmt, root, train_per_class=TRAIN_PER_CLASS, val_per_class=VAL_PER_CLASS, seed=0)
        _ROOTS[fmt] = root
    return _ROOTS[fmt]


def tiny_copy(fmt: str, tmp_path_factory, dest: Path) -> Path:
    """A private copy of the tiny dataset, for tests that damage it."""
    shutil.copytree(tiny_root(fmt, tmp_path_factory), dest)
    return dest


def read_semicolon(path: Path) -> dict[str, str]:
    return dict(line.split(";") for line in path.read_text(encoding="utf-8").splitlines() if line)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
