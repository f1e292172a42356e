"""Recipe constants of the published methods, each asserted once, beside its source.

Asserted elsewhere (not repeated here): the paper.yaml training recipe (tests/test_real_layouts.py), the
paper's parameter counts and FLOPs (tests/test_adafuse.py, tests/test_models.py), CGNet's 1/p partial sum
and its 1e-4 theta loss (tests/test_baselines.py), the 13 crop offsets (tests/test_data_loader.py).
"""
import pytest
import torch

from vidbench.data import transforms as tf
from vidbench.flops import attach
from vidbench.hooks import TemporalShift
from vidbench.plugins import get_method

T = 4


def build(method, **overrides):
    spec = get_method(method)
    model = spec.build({**spec.point_config("default"), **overrides}, backbone="resnet_tiny", num_classes=5,
                       num_segments=T)
    return attach(model, (T, 3, 32, 32))


def shifted_channels(shift: TemporalShift, channels: int = 64) -> dict[str, float]:
    """Share of channels a shift takes from the next frame, from the previous frame, and leaves in place."""
    frames = torch.arange(1, T + 1, dtype=torch.float).view(T, 1, 1, 1).expand(T, channels, 1, 1)
    middle = shift(frames.contiguous()).view(T, channels)[1]        # frame 1 of 0..3 holds value 2
    return {"next": (middle == 3).float().mean().item(), "previous": (middle == 1).float().mean().item(),
            "own": (middle == 2).float().mean().item()}


def test_tsm_shifts_one_eighth_each_way():
    # Lin et al., TSM (ICCV 2019), Sec. 3: 1/8 of the channels from t+1 and 1/8 from t-1 (released
    # code: --shift_div 8, "blockres" placement: the residual branch of every block)
    blocks = build("tsm").backbone.blocks()
    assert all(isinstance(block.shift, TemporalShift) for _, block in blocks)
    assert shifted_channels(blocks[0][1].shift) == {"next": 1 / 8, "previous": 1 / 8, "own": 3 / 4}


@pytest.mark.parametrize("method", ["earlyexit", "earlyexit_frames"])
def test_early_exit_shift_is_online_one_eighth_from_the_past(method):
    # Wu et al., Dynamic Inference (2020): online TSM (Lin et al., Sec. 3.3) shifts 1/8 from the past only,
    # so a frame never waits for a later one
    shift = build(method).backbone.layer1[0].shift
    assert shifted_channels(shift) == {"next": 0.0, "previous": 1 / 8, "own": 7 / 8}


def test_adafuse_gumbel_temperature_and_policy_init():
    # released AdaFuse code: Gumbel-Softmax tau 0.67 (constant); policy Linear layers N(0, 0.001), bias 0
    model = build("adafuse", logit_scale=1.0)
    hook = model.backbone.layer4[0].policy
    assert hook.tau == 0.67
    assert hook.fc2.weight.std().item() == pytest.approx(0.001, rel=0.1)
    assert torch.all(hook.fc1.bias == 0) and torch.all(hook.fc2.bias == 0)


def test_multiscale_crop_scales():
    # TSN's released GroupMultiScaleCrop: scales 1, .875, .75, .66 of the short side, crop height and width
    # at most one scale apart (max_distort 1); sizes within 3 pixels of the input size snap to it
    sizes = {(h, w) for h, w in tf.crop_sizes(256, 340, 224)}
    side = [256, 224, 192, 168]
    assert sizes == {(side[i], side[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1}


def test_imagenet_normalisation():
    # torchvision's ImageNet statistics, which the pretrained ResNets were trained with
    assert tf.IMAGENET_MEAN == (0.485, 0.456, 0.406) and tf.IMAGENET_STD == (0.229, 0.224, 0.225)

