"""Property-based tests (hypothesis) of the invariants the numbers rest on: Eq. 5's cost, the temporal
shift, segment sampling, crops, and config overrides."""
import json
import math

import numpy as np
import torch
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from vidbench import config as cfg
from vidbench.data import transforms as tf
from vidbench.data.dataset import sample_indices
from vidbench.hooks import TemporalShift
from vidbench.policy import KEEP, REUSE, SKIP, eq5_flops, one_hot

M1, M2 = 90.0, 30.0   # conv1 / conv2 MACs of one frame


@st.composite
def policies(draw):
    """Action indices [1, T, C] and one (frame, channel) position in it."""
    frames, channels = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    flat = draw(st.lists(st.sampled_from([SKIP, REUSE, KEEP]), min_size=frames * channels,
                         max_size=frames * channels))
    index = torch.tensor(flat).view(1, frames, channels)
    return index, draw(st.integers(0, frames - 1)), draw(st.integers(0, channels - 1))


def cost(index) -> float:
    return eq5_flops(one_hot(index), M1, M2).item()


@given(policies(), st.sampled_from([REUSE, KEEP]))
def test_eq5_grows_when_a_skipped_channel_is_computed(policy, action):
    index, t, c = policy
    frames, channels = index.shape[1:]
    assert 0 <= cost(index) <= frames * (M1 + M2)
    index[0, t, c] = SKIP
    skipped = cost(index)
    index[0, t, c] = action
    assert cost(index) >= skipped + M2 / channels - 1e-6    # conv2 now reads the channel at frame t


@given(st.integers(1, 6), st.floats(0, 1), st.floats(0, 1), st.floats(0, 0.5))
def test_eq5_is_monotone_in_the_computed_shares(frames, keep, reuse, moved):
    """Uniform shares [skip, reuse, keep] on every frame: moving share from skip to keep or to reuse never
    lowers the cost, and the cost runs from 0 (all skip) to dense (all keep)."""
    assume(keep + reuse <= 1)
    moved = min(moved, 1 - keep - reuse)

    def shares(k, r):
        return torch.tensor([1 - k - r, r, k]).expand(1, frames, 4, 3)

    base = eq5_flops(shares(keep, reuse), M1, M2).item()
    assert eq5_flops(shares(keep + moved, reuse), M1, M2).item() >= base - 1e-6
    assert eq5_flops(shares(keep, reuse + moved), M1, M2).item() >= base - 1e-6
    assert -1e-6 <= base <= frames * (M1 + M2) + 1e-6


@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 24), st.integers(1, 9), st.booleans())
def test_shift_moves_channels_and_loses_only_the_edge_frames(videos, frames, channels, fold_div, online):
    x = torch.arange(1, videos * frames * channels * 2 + 1, dtype=torch.float).view(videos * frames, channels, 2, 1)
    out = TemporalShift(frames, fold_div, online)(x).view(videos, frames, channels, 2)
    video = x.view(videos, frames, channels, 2)
    fold = channels // fold_div
    if online:     # from the past only: the first frame's shifted channels are padding
        moved = {0: (slice(1, None), slice(None, -1))}
        lost = video[:, -1, :fold]
    else:          # first fold from the next frame, second fold from the previous one
        moved = {0: (slice(None, -1), slice(1, None)), 1: (slice(1, None), slice(None, -1))}
        lost = torch.cat([video[:, 0, :fold].flatten(), video[:, -1, fold:2 * fold].flatten()])
    for k, (to, source) in moved.items():
        part = slice(k * fold, (k + 1) * fold)
        assert torch.equal(out[:, to, part], video[:, source, part])
    kept = set(video.flatten().tolist()) - set(lost.flatten().tolist())
    assert set(out.flatten().tolist()) - {0.0} == kept                  # every other value arrives once
    assert (out == 0).sum().item() == lost.numel()                     # the edge frames' padding
    assert len(kept) == out.numel() - lost.numel()


@given(st.integers(1, 400), st.integers(1, 16), st.booleans(), st.integers(0, 2**31))
def test_segment_indices_are_in_range_ordered_and_in_their_segments(num_frames, segments, train, seed):
    idx = sample_indices(num_frames, segments, train, torch.Generator().manual_seed(seed))
    assert idx.shape == (segments,) and idx.min() >= 0 and idx.max() < num_frames
    assert np.all(np.diff(idx) >= 0)
    for i, k in enumerate(idx.tolist()):
        assert math.floor(i * num_frames / segments) <= k <= min(num_frames - 1,
                                                                 math.floor((i + 1) * num_frames / segments))
    if not train and num_frames >= segments:
        assert np.all(np.diff(idx) > 0)                 # centres of segments at least one frame long


@given(st.integers(8, 400), st.integers(8, 400), st.integers(8, 256), st.integers(0, 2**31))
def test_training_crop_lies_inside_the_frame(height, width, size, seed):
    top, left, crop_h, crop_w = tf.multiscale_crop_box(height, width, size, torch.Generator().manual_seed(seed))
    assert crop_h >= 1 and crop_w >= 1
    assert 0 <= top and top + crop_h <= height and 0 <= left and left + crop_w <= width


@given(st.integers(4, 120), st.integers(4, 120), st.integers(4, 40), st.integers(0, 24), st.integers(0, 2**31))
def test_clip_cuts_stay_inside_the_frame(height, width, size, extra, seed):
    frames = [np.zeros((height, width, 3), np.uint8)] * 2
    generator = torch.Generator().manual_seed(seed)
    for cut in tf.ClipTransform(train=True, input_size=size, scale_size=size, flip=True).cut(frames, generator):
        assert 1 <= cut.shape[0] <= height and 1 <= cut.shape[1] <= width
    centre = tf.ClipTransform(train=False, input_size=size, scale_size=size + extra).cut(frames)
    assert all(cut.shape == (size, size, 3) for cut in centre)


TRAIN_LAYERS = ("config", "dataset", "method", "point")


@given(st.dictionaries(st.sampled_from(TRAIN_LAYERS), st.floats(1e-5, 1.0), min_size=1),
       st.dictionaries(st.sampled_from(("config", "dataset", "method")), st.floats(0.0, 0.9)))
def test_config_overrides_round_trip(lr_by_layer, dropout_by_layer):
    """An override reaches the run spec from the highest layer that sets it, and the spec survives JSON (the
    workflow hands it to `vidbench train --spec`)."""
    data = yaml.safe_load(cfg.DEFAULT_CONFIG.read_text())
    entry = data["datasets"]["synth-sthv1"]
    targets = {"config": data["train"], "dataset": entry.setdefault("train", {}),
               "method": data["per_method"].setdefault("tsn", {}).setdefault("train", {}),
               "point": data["per_method"]["tsn"].setdefault("points", {}).setdefault("default", {})
                            .setdefault("train", {})}
    for layer, lr in lr_by_layer.items():
        targets[layer]["lr"] = lr
    models = {"config": data["model"], "dataset": entry.setdefault("model", {}),
              "method": entry.setdefault("methods", {}).setdefault("tsn", {})}
    for layer, dropout in dropout_by_layer.items():
        models[layer]["dropout"] = dropout
    spec = cfg.resolve_run(cfg.validate_config(data), "synth-sthv1", "tsn", "default", "resnet_tiny", 0)
    assert spec["train"]["lr"] == lr_by_layer[max(lr_by_layer, key=TRAIN_LAYERS.index)]
    if dropout_by_layer:
        highest = max(dropout_by_layer, key=("config", "dataset", "method").index)
        assert spec["model"]["dropout"] == dropout_by_layer[highest]
    assert json.loads(json.dumps(spec)) == spec
