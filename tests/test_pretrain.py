"""`vidbench pretrain`: the synthetic stand-in for ImageNet weights, and how runs find it."""
from __future__ import annotations

from pathlib import Path

import torch
import yaml

from vidbench import config as cfg
from vidbench import pretrain
from vidbench.backbones import create_backbone, load_pretrained
from vidbench.cli import main
from vidbench.rundir import fingerprint

DEFAULT = Path(__file__).resolve().parent.parent / "workflow" / "config" / "default.yaml"


def test_frames_are_labelled_by_family_and_progress_and_reproducible():
    frames, labels = pretrain.render_frames(40, seed=3)
    again, labels_again = pretrain.render_frames(40, seed=3)
    assert len(frames) == 40 and all(f.dtype.name == "uint8" and f.ndim == 3 for f in frames)
    assert all((a == b).all() for a, b in zip(frames, again)) and torch.equal(labels, labels_again)
    assert 0 <= labels.min() and labels.max() < len(pretrain.families()) * pretrain.BINS
    assert len(pretrain.families()) == 9  # distinct (generator, arguments) of the sthv1, sthv2 and jester classes


def test_pretrain_writes_weights_a_backbone_loads(tmp_path, capsys):
    out = tmp_path / "resnet_tiny-synthetic.pth"
    args = ["pretrain", "--out", str(out), "--images", "32", "--steps", "2", "--batch-size", "8"]
    assert main(args) == 0
    first = torch.load(out, weights_only=True)
    backbone = create_backbone("resnet_tiny")
    load_pretrained(backbone, out)
    assert all(torch.equal(backbone.state_dict()[name], value) for name, value in first.items())
    assert not torch.equal(first["conv1.weight"], create_backbone("resnet_tiny").state_dict()["conv1.weight"])
    assert main(args) == 0
    assert all(torch.equal(value, torch.load(out, weights_only=True)[name]) for name, value in first.items())


def test_runs_resolve_synthetic_to_the_pretrain_rule_output(tmp_path):
    full = yaml.safe_load(DEFAULT.read_text())
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**full, "data_dir": str(tmp_path / "data")}))
    config = cfg.load_config(path)  # validates without the file: the workflow makes it
    spec = cfg.resolve_run(config, "synth-jester", "tsm", "default", "resnet_tiny", 0)
    assert spec["model"]["pretrained"] == f"{tmp_path}/data/pretrained/resnet_tiny-synthetic.pth"
    assert cfg.pretrained_paths(config) == {}  # nothing for validation to open before the rule ran
    assert fingerprint(spec)["pretrain.steps"] == config["pretrain"]["steps"]  # a resume checks what made its init
    scratch = cfg.resolve_run({**config, "model": {**config["model"], "pretrained": None}}, "synth-jester", "tsm",
                              "default", "resnet_tiny", 0)
    assert "pretrain" not in scratch and scratch["model"]["pretrained"] is None


def test_training_from_a_missing_synthetic_backbone_says_how_to_make_it(tmp_path, capsys):
    full = yaml.safe_load(DEFAULT.read_text())
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**full, "data_dir": str(tmp_path / "data")}))
    args = ["train", "--config", str(path), "--dataset", "synth-jester", "--method", "tsn", "--out", str(tmp_path / "run")]
    assert main(args) == 2
    weights = tmp_path / "data" / "pretrained" / "resnet_tiny-synthetic.pth"
    assert capsys.readouterr().err.strip() == (
        f"vidbench train: error: {weights}: the synthetically pretrained backbone is missing (expected "
        f"`vidbench pretrain --backbone resnet_tiny --out {weights} --images 6000 --steps 300` first "
        "(the workflow's pretrain rule runs it))")
