"""The fault suite: each fault a user or a cluster can inject into a run, and what the harness promises."""
from __future__ import annotations

import os

import pytest
import torch

from vidbench import io as vio
from vidbench.evaluate import evaluate
from vidbench.train import CHECKPOINT, FINAL, train


class Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant_pickle(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": Payload(marker), "state": {"epoch": 1}}, path)


def test_crafted_pickle_is_refused_naming_the_file(tmp_path):
    marker, planted = tmp_path / "pwned", tmp_path / "file.pt"
    plant_pickle(planted, marker)
    with pytest.raises(vio.UnreadableFile, match=str(planted)):
        vio.load_torch(planted)
    assert not marker.exists()


def test_crafted_checkpoint_runs_nothing(train_spec, tmp_path):
    marker, run = tmp_path / "pwned", tmp_path / "run"
    plant_pickle(run / CHECKPOINT, marker)
    with pytest.raises(vio.UnreadableFile, match=str(run / CHECKPOINT)):
        train(train_spec, run, progress=False)
    assert not marker.exists()


def test_crafted_model_file_runs_nothing(train_spec, tmp_path):
    marker, run = tmp_path / "pwned", tmp_path / "run"
    vio.write_json(run / "spec.json", train_spec)
    plant_pickle(run / FINAL, marker)
    with pytest.raises(vio.UnreadableFile, match=str(run / FINAL)):
        evaluate(run, progress=False)
    assert not marker.exists()
