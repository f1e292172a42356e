"""Helpers for the tests: tiny synthetic datasets (the data tests' generated once per test session), and the
test config pointed at one of them."""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from vidbench import config as cfg
from vidbench.data.prepare import prepare
from vidbench.data.synth import generate

TEST_CONFIG = cfg.DEFAULT_CONFIG.parent / "test.yaml"

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


def tiny_sthv1(root: Path, seed: int = 0) -> None:
    """A tiny Something-V1 (3 train / 2 val videos per class) generated and prepared under `root` in the
    workflow's layout (raw/synth-sthv1, prepared/synth-sthv1)."""
    raw = root / "raw" / "synth-sthv1"
    generate("sthv1", raw, train_per_class=3, val_per_class=2, seed=seed)
    prepare("sthv1", raw, root / "prepared" / "synth-sthv1")


def tiny_sthv1_config(root: Path, **train) -> dict:
    """The test config on synth-sthv1 alone, with its data and results under `root` and `train` overrides."""
    data = yaml.safe_load(TEST_CONFIG.read_text())
    data.update(results=str(root / "results"), data_dir=str(root))
    data["datasets"] = {"synth-sthv1": data["datasets"]["synth-sthv1"]}
    data["train"].update(train)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return cfg.load_config(path)
