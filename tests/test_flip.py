"""No horizontal flip where the dataset forbids it (Something-Something, Jester: "left to right" is a class),
checked through the real config and the real training loader on clips whose brightness grows to the right."""
import pytest
import torch
from PIL import Image

from vidbench import config as cfg
from vidbench.data.prepare import prepare
from vidbench.data.synth import generate
from vidbench.engine import make_loader

PAPER = cfg.DEFAULT_CONFIG.parent / "paper.yaml"
EPOCHS = 3


@pytest.fixture(scope="module")
def left_to_right(tmp_path_factory):
    """A prepared frame-folder dataset whose every frame is a left-dark, right-bright ramp."""
    root = tmp_path_factory.mktemp("ramp")
    raw = root / "raw"
    generate("sthv1", raw, train_per_class=1, val_per_class=1, seed=0)
    for frame in raw.rglob("*.jpg"):
        with Image.open(frame) as img:
            width, height = img.size
        ramp = torch.linspace(0, 255, width).round().to(torch.uint8).expand(height, 3, width).permute(0, 2, 1)
        Image.fromarray(ramp.contiguous().numpy()).save(frame, quality=95)
    prepare("sthv1", raw, root / "prepared")
    return root / "prepared"


def mirrored_share(config, dataset, prepared) -> float:
    """Share of training clips, over a few epochs of the run's real loader, whose ramp runs right to left."""
    spec = cfg.resolve_run(config, dataset, "tsn", "default", "resnet_tiny", 0)
    spec["data"].update(prepared=str(prepared), workers=0, cache=False, input_size=32, scale_size=36)
    loader = make_loader(spec, "train", train=True, batch_size=4)
    mirrored = []
    for epoch in range(EPOCHS):
        loader.generator.manual_seed(epoch)
        for clips, _, _ in loader:
            half = clips.shape[-1] // 2
            left, right = clips[..., :half].mean((1, 2, 3, 4)), clips[..., half:].mean((1, 2, 3, 4))
            mirrored += (left > right).tolist()
    return sum(mirrored) / len(mirrored)


def paper_config(tmp_path):
    """paper.yaml validated without its dataset roots and weights (those are checked elsewhere)."""
    import yaml

    data = yaml.safe_load(PAPER.read_text())
    data["model"]["pretrained"] = None
    for entry in data["datasets"].values():
        entry.pop("root")
        entry.pop("extract", None)
        entry["synthetic"] = {"train_per_class": 1, "val_per_class": 1, "seed": 0}
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(data))
    return cfg.load_config(path)


@pytest.mark.parametrize("which, directional, kinetics", [
    ("default", ["synth-sthv1", "synth-sthv2", "synth-jester"], "synth-minikinetics"),
    ("paper", ["sthv1", "sthv2", "jester"], "minikinetics"),
])
def test_only_kinetics_is_flipped(left_to_right, tmp_path, which, directional, kinetics):
    config = cfg.load_config(cfg.DEFAULT_CONFIG) if which == "default" else paper_config(tmp_path)
    for dataset in directional:
        assert mirrored_share(config, dataset, left_to_right) == 0, dataset
    assert 0.2 < mirrored_share(config, kinetics, left_to_right) < 0.8   # flipped about half the time
