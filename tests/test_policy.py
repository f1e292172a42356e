"""vidbench.policy: fusion semantics, Eq. 5 cost and the policy classifier's FLOPs and statistics."""
import pytest
import torch

from vidbench.backbones import create_backbone
from vidbench.flops import attach
from vidbench.policy import (KEEP, REUSE, SKIP, PolicyClassifier, PolicyHook, eq5_flops, fuse, install_policies,
                             one_hot)

T = 4


def test_action_order():
    assert (SKIP, REUSE, KEEP) == (0, 1, 2)


def test_fuse_keeps_reuses_previous_frame_and_skips():
    n, c = 2, 3
    out = torch.randn(n * T, c, 2, 2)
    index = torch.tensor([SKIP, REUSE, KEEP]).repeat(n * T, 1)            # channel 0 skip, 1 reuse, 2 keep
    fused = fuse(out, one_hot(index), T).view(n, T, c, 2, 2)
    video = out.view(n, T, c, 2, 2)
    assert torch.all(fused[:, :, 0] == 0)
    assert torch.all(fused[:, 0, 1] == 0)                                 # nothing before the first frame
    assert torch.equal(fused[:, 1:, 1], video[:, :-1, 1])                 # frame t-1 of the same video
    assert torch.equal(fused[:, :, 2], video[:, :, 2])


def test_fuse_passes_straight_through_gradients():
    out = torch.randn(T, 2, 1, 1)
    logits = torch.randn(T, 2, 3, requires_grad=True)
    soft = logits.softmax(-1)
    actions = one_hot(soft.argmax(-1)) - soft.detach() + soft
    fuse(out, actions, T).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def hand_eq5(index, m1, m2):
    """index [T, C] of actions for one video; explicit loops over Eq. 5."""
    frames, channels = index.shape
    total = 0.0
    for t in range(frames):
        computed = sum(1 for c in range(channels)
                       if index[t, c] == KEEP or (t + 1 < frames and index[t + 1, c] == REUSE))
        not_skipped = sum(1 for c in range(channels) if index[t, c] != SKIP)
        total += computed / channels * m1 + not_skipped / channels * m2
    return total


def test_eq5_matches_hand_computation():
    torch.manual_seed(0)
    index = torch.randint(0, 3, (3, T, 5))
    got = eq5_flops(one_hot(index), 100.0, 30.0)
    want = torch.tensor([hand_eq5(index[b], 100.0, 30.0) for b in range(3)])
    assert torch.allclose(got, want.float())
    assert eq5_flops(one_hot(torch.full((1, T, 5), KEEP)), 100.0, 30.0).item() == pytest.approx(T * 130.0)
    assert eq5_flops(one_hot(torch.full((1, T, 5), SKIP)), 100.0, 30.0).item() == 0.0
    # all reuse: conv1 runs for every frame but the last (its output is reused by the next frame)
    assert eq5_flops(one_hot(torch.full((1, T, 5), REUSE)), 100.0, 30.0).item() == pytest.approx((T - 1) * 100 + T * 30)


def test_eq5_is_differentiable():
    logits = torch.randn(2, T, 4, 3, requires_grad=True)
    eq5_flops(logits.softmax(-1), 10.0, 5.0).sum().backward()
    assert logits.grad.abs().sum() > 0


class FixedHook(PolicyHook):
    """A hand-made pattern: index [T, C] repeated for every video."""

    def __init__(self, num_segments, index):
        super().__init__(num_segments)
        self.index = index

    def decide(self, out, branch):
        return one_hot(self.index.repeat(out.shape[0] // self.num_segments, 1))


def tiny_model(patterns):
    backbone = create_backbone("resnet_tiny")
    install_policies(backbone, lambda name, block: FixedHook(T, patterns(name, block.width)))
    return attach(PolicyClassifier(backbone, 5, T), (T, 3, 32, 32))


def dense_model():
    return attach(PolicyClassifier(create_backbone("resnet_tiny"), 5, T), (T, 3, 32, 32))


@pytest.mark.parametrize("kind", ["keep", "skip", "reuse", "pattern"])
def test_classifier_flops_follow_eq5(kind):
    gen = torch.Generator().manual_seed(1)
    fixed = {"keep": KEEP, "skip": SKIP, "reuse": REUSE}

    def patterns(name, width):
        if kind in fixed:
            return torch.full((T, width), fixed[kind])
        return torch.randint(0, 3, (T, width), generator=gen)

    model = tiny_model(patterns).eval()
    with torch.no_grad():
        out = model(torch.randn(2, T, 3, 32, 32))
    expected = model.dense_flops
    for hook in model.hooks():
        m1, m2 = model.cost(hook.conv1_name), model.cost(hook.conv2_name)
        assert m1 > 0 and m2 > 0
        expected -= m1 + m2 - hand_eq5(hook.index, m1 / T, m2 / T)
    assert model.dense_flops == dense_model().dense_flops  # fixed hooks have no parameters, cost nothing
    assert out.flops.shape == (2,)
    assert out.flops.double() == pytest.approx([expected] * 2, rel=1e-6)
    if kind == "keep":
        assert torch.all(out.flops == model.dense_flops)


def test_stats_and_summary():
    gen = torch.Generator().manual_seed(2)
    model = tiny_model(lambda name, width: torch.randint(0, 3, (T, width), generator=gen)).eval()
    with torch.no_grad():
        out = model(torch.randn(3, T, 3, 32, 32))
    stats = out.stats
    assert stats["actions"].shape == (3, 3) and stats["per_block"].shape == (3, 4, 3)
    assert torch.allclose(stats["actions"].sum(-1), torch.ones(3))
    assert torch.allclose(stats["per_block"].sum(-1), torch.ones(3, 4))
    assert torch.all(stats["static"].sum(-1) <= 1)
    means = {name: value.double().mean(0).tolist() for name, value in stats.items()}
    summary = model.summarize(means)
    assert summary["skip"] + summary["reuse"] + summary["keep"] == pytest.approx(1.0)
    assert summary["reuse_over_keep"] == pytest.approx(summary["reuse"] / summary["keep"])
    assert [b["block"] for b in summary["per_block"]] == ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    for row, hook in zip(summary["per_block"], model.hooks()):
        index = hook.index
        assert row["skip"] + row["reuse"] + row["keep"] == pytest.approx(1.0)
        assert row["keep"] == pytest.approx((index == KEEP).float().mean().item())
        assert row["static"] == pytest.approx((index == index[:1]).all(0).float().mean().item())
    assert 0 <= summary["static_share"] <= 1


def test_static_share_is_one_for_constant_policy():
    model = tiny_model(lambda name, width: torch.full((T, width), REUSE)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, T, 3, 32, 32))
    summary = model.summarize({k: v.double().mean(0).tolist() for k, v in out.stats.items()})
    assert summary["static_share"] == pytest.approx(1.0) and summary["static"]["reuse"] == pytest.approx(1.0)
    assert summary["reuse"] == pytest.approx(1.0) and summary["reuse_over_keep"] is None


def test_install_policies_selected_stages():
    backbone = create_backbone("resnet18")
    installed = install_policies(backbone, lambda name, block: FixedHook(T, torch.zeros(T, block.width).long()),
                                 stages=[4])
    assert [name for name, _ in installed] == ["layer4.0", "layer4.1"]
    assert installed[0][1].conv1_name == "backbone.layer4.0.conv1" and installed[0][1].channels == 512
    assert type(backbone.layer1[0].policy).__name__ == "PassPolicy"


def test_static_share_weights_blocks_by_their_channels():
    """layer1.0 (8 of resnet_tiny's 8 + 16 + 32 + 64 decided channels) never changes its action; every other
    block alternates keep and skip over frames: the video's static share is 8 / 120, not a mean of blocks."""
    def patterns(name, width):
        if name == "layer1.0":
            return torch.full((T, width), KEEP)
        return torch.tensor([KEEP, SKIP] * (T // 2))[:, None].expand(T, width)

    model = tiny_model(patterns).eval()
    with torch.no_grad():
        out = model(torch.randn(2, T, 3, 32, 32))
    summary = model.summarize({k: v.double().mean(0).tolist() for k, v in out.stats.items()})
    assert [row["static"] for row in summary["per_block"]] == [1.0, 0.0, 0.0, 0.0]
    assert out.stats["static"].shape == (2, 4, 3)
    assert summary["keep"] == pytest.approx(64 / 120) and summary["skip"] == pytest.approx(56 / 120)  # by channels
    assert summary["static_share"] == pytest.approx(8 / 120)
    assert summary["static"]["keep"] == pytest.approx(8 / 120) and summary["static"]["skip"] == 0


def policy_model(efficiency):
    backbone = create_backbone("resnet_tiny")
    install_policies(backbone, lambda name, block: FixedHook(T, torch.full((T, block.width), SKIP)))
    return attach(PolicyClassifier(backbone, 5, T, efficiency=efficiency), (T, 3, 32, 32))


def test_efficiency_loss_only_in_training_with_a_positive_lam_and_its_defaults():
    clips = torch.randn(2, T, 3, 32, 32)
    for efficiency in ({}, {"lam": 0}, {"lam": None}):
        assert policy_model(efficiency).train()(clips).losses == {}
    assert policy_model({"lam": 0.1}).eval()(clips).losses == {}
    model = policy_model({"lam": 0.1}).train()                  # form gflops, target 0 by default
    out = model(clips)
    assert out.losses["efficiency"].item() == pytest.approx(0.1 * out.flops.mean().item() / T / 1e9, rel=1e-6)
    for target in (0.5, None):                                  # no target: 0
        given = {} if target is None else {"target": target}
        model = policy_model({"lam": 2.0, "form": "normalised", **given}).train()
        out = model(clips)
        share = out.flops.mean().item() / model.dense_flops
        assert out.losses["efficiency"].item() == pytest.approx(2.0 * (share - (target or 0)) ** 2, rel=1e-5)


def test_a_policy_classifier_without_hooks_reports_its_static_cost():
    model = dense_model().eval()
    out = model(torch.randn(2, T, 3, 32, 32))
    assert out.flops.tolist() == [model.dense_flops] * 2 and out.stats == {}


def test_a_module_costs_nothing_before_the_cost_table_is_attached():
    model = PolicyClassifier(create_backbone("resnet_tiny"), 5, T)
    assert model.cost("backbone.layer1.0.conv1") == 0.0 and model.dense_flops == 0.0
    assert attach(model, (T, 3, 32, 32)).cost("backbone.layer1.0.conv1") > 0


def test_a_saved_cost_table_gives_the_dense_cost_counted():
    """Evaluation attaches the table training saved; the LSTM adds the cell MACs fvcore misses (none on the
    torch of the constraints file, which traces nn.LSTMCell) to the table's total either way."""
    from vidbench.flops import attach_costs
    from vidbench.plugins import get_method

    spec = get_method("lstm")

    def build():
        return spec.build(dict(spec.defaults), backbone="resnet_tiny", num_classes=5, num_segments=T)

    counted = attach(build(), (T, 3, 32, 32))
    assert attach_costs(build(), counted.costs).dense_flops == counted.dense_flops > 0
