"""Backbones, the model interface and FLOP metering, against the paper's published figures."""
import pytest
import torch

from vidbench.backbones import create_backbone, load_pretrained
from vidbench.errors import InputError
from vidbench.flops import attach, count_params
from vidbench.hooks import TemporalShift
from vidbench.plugins import get_method


def build(method, backbone, classes=174, frames=8, size=224):
    spec = get_method(method)
    model = spec.build(spec.point_config("default"), backbone=backbone, num_classes=classes, num_segments=frames)
    return attach(model, (frames, 3, size, size))


@pytest.mark.parametrize("backbone, gflops", [("resnet18", 14.55), ("resnet50", 32.88)])
def test_tsn_flops_match_paper(backbone, gflops):
    model = build("tsn", backbone)
    assert round(model.dense_flops / 1e9, 2) == gflops


def test_lstm_r50_params_and_flops():
    model = build("lstm", "resnet50")
    assert round(count_params(model) / 1e6, 2) == 28.84
    cell = 8 * 4 * 512 * (2048 + 512)  # counted once, whether or not fvcore sees the cell
    assert model.dense_flops == pytest.approx(build("tsn", "resnet50").dense_flops - 8 * 2048 * 174 + 8 * 512 * 174
                                              + cell, rel=1e-6)


def test_tsm_costs_what_tsn_costs():
    assert build("tsm", "resnet_tiny", 10, 8, 32).dense_flops == build("tsn", "resnet_tiny", 10, 8, 32).dense_flops


def test_model_output_contract():
    model = build("tsm", "resnet_tiny", classes=7, frames=4, size=32)
    out = model(torch.randn(3, 4, 3, 32, 32))
    assert out.logits.shape == (3, 7) and out.flops.shape == (3,)
    assert torch.all(out.flops == model.dense_flops)


def test_shift_moves_channels_between_frames():
    x = torch.arange(2 * 3 * 8, dtype=torch.float).view(2 * 3, 8, 1, 1)  # N=2, T=3, C=8
    out = TemporalShift(3, fold_div=8)(x).view(2, 3, 8)
    frames = x.view(2, 3, 8)
    assert torch.equal(out[:, :2, 0], frames[:, 1:, 0]) and torch.all(out[:, 2, 0] == 0)
    assert torch.equal(out[:, 1:, 1], frames[:, :2, 1]) and torch.all(out[:, 0, 1] == 0)
    assert torch.equal(out[:, :, 2:], frames[:, :, 2:])
    online = TemporalShift(3, fold_div=8, online=True)(x).view(2, 3, 8)
    assert torch.equal(online[:, 1:, 0], frames[:, :2, 0]) and torch.equal(online[:, :, 1:], frames[:, :, 1:])


def test_a_streamed_online_shift_carries_the_last_frame_of_the_videos_that_go_on():
    from vidbench.hooks import stream_shifts

    shift = TemporalShift(4, fold_div=8, online=True)
    x = torch.arange(3 * 2 * 8, dtype=torch.float).view(3 * 2, 8, 1, 1)   # 3 videos, a chunk of 2 frames
    stream_shifts(shift, 2, keep=torch.tensor([True, False, True]))        # before any call: nothing carried
    assert shift.last is None
    shift(x)
    carried = x.view(3, 2, 8, 1, 1)[:, -1, :1]
    assert torch.equal(shift.last, carried)
    stream_shifts(shift, 2)                                                 # all videos go on
    assert torch.equal(shift.last, carried)
    stream_shifts(shift, 2, keep=torch.tensor([True, False, True]))
    assert torch.equal(shift.last, carried[[0, 2]])
    stream_shifts(shift, None)
    assert shift.last is None and shift.chunk is None


def _torchvision_style_state(backbone):
    state = {k: v.clone() for k, v in backbone.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, backbone.out_features), torch.randn(1000)
    return state


def test_pretrained_torchvision_checkpoint_loads(tmp_path):
    source = create_backbone("resnet18")
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(_torchvision_style_state(source), path)
    target = create_backbone("resnet18")
    load_pretrained(target, path)
    assert torch.equal(target.layer3[1].conv2.weight, source.layer3[1].conv2.weight)


def test_pretrained_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_pretrained(create_backbone("resnet18"), tmp_path / "missing.pth")
    path = tmp_path / "r50.pth"
    torch.save(_torchvision_style_state(create_backbone("resnet50")), path)
    with pytest.raises(InputError, match="r50.pth.*do not match"):
        load_pretrained(create_backbone("resnet18"), path)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(InputError, match="unknown backbone 'resnet19'"):
        create_backbone("resnet19")


def test_make_backbone_loads_the_configured_weights(tmp_path):
    from vidbench.model import make_backbone

    source = create_backbone("resnet18")
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(_torchvision_style_state(source), path)
    for pretrained in (str(path), {"resnet18": str(path), "resnet50": "/elsewhere.pth"}):
        loaded = make_backbone("resnet18", {"pretrained": pretrained})
        assert torch.equal(loaded.layer2[0].conv1.weight, source.layer2[0].conv1.weight)
