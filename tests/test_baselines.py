"""Threshold, Random and CGNet: per-video FLOPs against hand computations with forced decisions."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidbench.errors import InputError
from vidbench.flops import attach
from vidbench.plugins import get_method
from vidbench.policy import KEEP, eq5_flops, one_hot
from vidbench.train import param_groups

T, SIZE, CLASSES = 4, 32, 5
# resnet_tiny at 32x32: (in, out, output side) of conv1 and conv2 of each block (one block a stage)
TINY_BLOCKS = [(8, 8, 16), (8, 16, 8), (16, 32, 4), (32, 64, 2)]


def conv_macs(cin, cout, side, k=3):
    return cout * cin * k * k * side * side * T


def hand_conv1(): return [conv_macs(cin, cout, side) for cin, cout, side in TINY_BLOCKS]
def hand_conv2(): return [conv_macs(cout, cout, side) for cin, cout, side in TINY_BLOCKS]


def build(method, **cfg):
    spec = get_method(method)
    model = spec.build({**spec.defaults, **cfg}, backbone="resnet_tiny", num_classes=CLASSES, num_segments=T)
    return attach(model, (T, 3, SIZE, SIZE)).eval()


def run(model, videos=3, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        return model(torch.randn(videos, T, 3, SIZE, SIZE))


def tsn_dense():
    return build("tsn").dense_flops


def load_model_module(method):
    return get_method(method).module()


# ------------------------------------------------------------------ Threshold

def test_threshold_keep_all_is_dense():
    out = run(build("threshold", keep_ratio=1.0))
    assert torch.all(out.flops == tsn_dense())


@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_threshold_fixed_ratio_matches_hand_count(ratio):
    model = build("threshold", keep_ratio=ratio)
    out = run(model)
    saved = sum((1 - round(ratio * cout) / cout) * (c1 + c2)
                for (_, cout, _), c1, c2 in zip(TINY_BLOCKS, hand_conv1(), hand_conv2()))
    assert torch.allclose(out.flops.double(), torch.full((3,), tsn_dense() - saved, dtype=torch.float64))
    assert torch.all(out.stats["actions"][:, 1] == 0)                     # never reuse


def test_threshold_keeps_the_strongest_channels():
    model = build("threshold", keep_ratio=0.5)
    hook = model.backbone.layer1[0].policy
    out = torch.rand(2 * T, 8, 3, 3)
    out[:, [1, 4, 6, 7]] += 10
    actions = hook.decide(out, None).argmax(-1)
    assert torch.all(actions[:, [1, 4, 6, 7]] == 2) and torch.all(actions[:, [0, 2, 3, 5]] == 0)


def test_threshold_charge_ranking_counts_conv1_densely():
    out = run(build("threshold", keep_ratio=0.5, charge_ranking=True))
    saved = sum(0.5 * c2 for c2 in hand_conv2())
    assert out.flops[0].item() == pytest.approx(tsn_dense() - saved)


# ------------------------------------------------------------------ CGNet

def test_cgnet_forced_gates_match_hand_count():
    dense = build("cgnet", force="open")
    rest = sum(c1 * (cin - cin // 4) / cin for (cin, _, _), c1 in zip(TINY_BLOCKS, hand_conv1()))
    gate_norms = sum(cout * side * side * T for _, cout, side in TINY_BLOCKS)   # BN(partial): one op an element
    assert dense.dense_flops == tsn_dense() + gate_norms
    assert torch.all(run(dense).flops == dense.dense_flops)
    closed = build("cgnet", force="closed")
    assert torch.allclose(run(closed).flops.double(), torch.full((3,), closed.dense_flops - rest, dtype=torch.float64))


def test_cgnet_gate_open_matches_partial_plus_rest_and_learns():
    model = build("cgnet", force="open")
    block = model.backbone.layer2[0]
    x = torch.randn(2, 8, 16, 16)
    assert torch.allclose(block.gate(block.conv1, x), block.conv1(x), atol=1e-5)
    learned = build("cgnet").train()
    out = learned(torch.randn(2, T, 3, SIZE, SIZE))
    assert out.losses["theta"].item() == pytest.approx(1e-4 * sum(b.conv1.out_channels for _, b in
                                                                  learned.backbone.blocks()))
    (out.logits.sum() + out.losses["theta"]).backward()
    theta = learned.backbone.layer1[0].gate.theta
    assert theta.grad is not None and theta.grad.abs().sum() > 0           # straight-through gradient
    open_share = out.stats["gate_open"]
    assert torch.all((open_share > 0) & (open_share < 1))
    low, high = learned.dense_flops - sum(r * (cin - cin // 4) / cin for (cin, _, _), r in
                                          zip(TINY_BLOCKS, hand_conv1())), learned.dense_flops
    assert torch.all((out.flops > low) & (out.flops < high))


# ------------------------------------------------------------------ Random

def test_random_forced_distributions_match_hand_count():
    assert torch.all(run(build("random", distribution=[0, 0, 1])).flops == tsn_dense())
    skip_all = run(build("random", distribution=[1, 0, 0])).flops
    assert skip_all[0].item() == pytest.approx(tsn_dense() - sum(hand_conv1()) - sum(hand_conv2()))
    # all reuse: conv1 computed at frames 0..T-2 (reused at the next frame), never at the last; conv2 dense
    reuse_all = run(build("random", distribution=[0, 1, 0])).flops
    assert reuse_all[0].item() == pytest.approx(tsn_dense() - sum(hand_conv1()) / T)


def test_expected_cost_matches_monte_carlo_of_eq5():
    module = load_model_module("random")
    dist, conv1, conv2 = [0.3, 0.25, 0.45], 1000.0, 700.0
    torch.manual_seed(0)
    index = torch.multinomial(torch.tensor(dist), 4000 * T * 16, replacement=True).view(4000, T, 16)
    sampled = eq5_flops(one_hot(index), conv1 / T, conv2 / T).mean().item()
    expected = module.expected_flops(dist, conv1 + conv2 + 500, [(conv1, conv2)], T) - 500
    assert sampled == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("ratio", [(0.6, 0.4), (0.1, 0.9), (1.0, 0.0), (0.0, 1.0)])
def test_match_distribution_hits_the_target(ratio):
    module = load_model_module("random")
    blocks, dense = [(1000.0, 900.0), (500.0, 700.0)], 5000.0
    target = 0.97 * dense            # reachable even by reuse only (saves conv1 at the last frame)
    dist, reached = module.match_distribution(target, dense, blocks, 8, ratio)
    assert reached and sum(dist) == pytest.approx(1) and min(dist) >= 0
    assert module.expected_flops(dist, dense, blocks, 8) == pytest.approx(target)
    if ratio[1] > 0:
        assert dist[0] / dist[1] == pytest.approx(ratio[0] / ratio[1])
    cheapest, reached = module.match_distribution(0.1 * dense, dense, blocks, 8, ratio)   # out of reach
    assert not reached and min(cheapest) >= 0


def _adafuse_metrics(tmp_path, gflops, skip=0.3, reuse=0.2):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"gflops": gflops, "dense_gflops": gflops * 1.5,
                                "stats": {"skip": skip, "reuse": reuse, "keep": 1 - skip - reuse}}))
    return str(path)


def test_random_matches_adafuse_flops_within_5_percent(tmp_path):
    target = 0.7 * tsn_dense()
    model = build("random", requires={"adafuse": _adafuse_metrics(tmp_path, target / 1e9)})
    out = run(model, videos=16)
    skip, reuse, keep = model.distribution()
    assert skip / reuse == pytest.approx(1.5) and model.matched
    assert out.flops.mean().item() == pytest.approx(target, rel=0.05)
    model.eval()
    again = run(model, videos=16)
    assert torch.equal(out.flops, again.flops)                  # evaluation draws are seeded
    state = model.state_dict()                                  # a checkpoint carries its distribution
    other = build("random", requires={"adafuse": _adafuse_metrics(tmp_path, 0.9 * tsn_dense() / 1e9)})
    other.load_state_dict(state)
    assert other.distribution() == pytest.approx(model.distribution())


def test_random_needs_a_distribution_or_an_adafuse_run(tmp_path):
    with pytest.raises(InputError, match="no distribution"):
        build("random")
    with pytest.raises(InputError, match="metrics"):
        build("random", requires={"adafuse": str(tmp_path / "missing.json")})


def test_random_trains_with_fresh_draws():
    model = build("random", distribution=[0.3, 0.3, 0.4]).train()
    clips = torch.randn(2, T, 3, SIZE, SIZE)
    first, second = model(clips), model(clips)
    assert not torch.equal(first.flops, second.flops)
    F.cross_entropy(first.logits, torch.tensor([0, 1])).backward()


# ------------------------------------------------------------------ details found by mutation testing

def test_tsm_shift_div_option_is_used():
    shift = build("tsm", shift_div=4).backbone.layer2[0].shift
    x = torch.arange(1, T + 1, dtype=torch.float).view(T, 1, 1, 1).expand(T, 16, 1, 1).contiguous()
    assert (shift(x).view(T, 16)[1] == 3).sum().item() == 16 // 4      # a quarter from the next frame


def test_tsm_shifts_the_residual_branch_only_not_the_shortcut():
    assert not any(block.shift_shortcut for _, block in build("tsm").backbone.blocks())


def test_cgnet_theta_target_option_is_used():
    model = build("cgnet", theta_target=0.0, theta_weight=1.0).train()
    out = model(torch.randn(2, T, 3, SIZE, SIZE))
    assert out.losses["theta"].item() == 0.0          # theta starts at the target


@pytest.mark.parametrize("ratio", [0.0, 1.5])
def test_threshold_refuses_a_keep_ratio_outside_0_to_1(ratio):
    with pytest.raises(ValueError, match="keep_ratio"):
        build("threshold", keep_ratio=ratio)


def test_threshold_keeps_at_least_one_channel_and_rounds_down():
    model = build("threshold", keep_ratio=0.01)           # 0.01 x 8 channels rounds down to 0: one is kept
    run(model)
    kept = [h.actions.argmax(-1).eq(KEEP).sum(-1) for h in model.hooks()]   # [N, T] channels kept per frame
    assert all(k.eq(1).all() for k in kept)


def test_match_distribution_without_a_ratio_splits_skip_and_reuse_evenly():
    module = load_model_module("random")
    dist, reached = module.match_distribution(4000.0, 5000.0, [(1000.0, 900.0), (500.0, 700.0)], 8, (0.0, 0.0))
    assert reached and dist[0] == pytest.approx(dist[1]) and sum(dist) == pytest.approx(1)


def test_cgnet_gate_of_a_bottleneck_equals_its_1x1_conv1_when_open():
    model = get_method("cgnet").build({**get_method("cgnet").defaults, "force": "open"}, backbone="resnet50",
                                      num_classes=CLASSES, num_segments=T)
    block = model.backbone.layer1[0]
    x = torch.randn(2, block.conv1.in_channels, 6, 6)
    assert torch.allclose(block.gate(block.conv1, x), block.conv1(x), atol=1e-5)


def test_cgnet_gate_refuses_a_conv_with_bias():
    gate = build("cgnet").backbone.layer1[0].gate
    with pytest.raises(ValueError, match="plain conv1"):
        gate(nn.Conv2d(8, 8, 3, padding=1, bias=True), torch.randn(2, 8, 4, 4))


def test_cgnet_theta_learns_by_the_sigmoid_gradient():
    """Straight-through: the forward pass uses the hard gate, theta's gradient is that of
    sigmoid(alpha * (BN(partial) - theta)) times the rest of the sum (alpha = 2)."""
    gate = build("cgnet").backbone.layer2[0].gate.train()
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    x = torch.randn(2, 8, 5, 5)
    gate(conv, x).sum().backward()
    split = 8 // 4
    rest = F.conv2d(x[:, split:], conv.weight[:, split:], None, 1, 1).detach()
    score = F.batch_norm(F.conv2d(x[:, :split], conv.weight[:, :split], None, 1, 1).detach(), None, None,
                         training=True)
    soft = torch.sigmoid(2.0 * score)
    want = (rest * soft * (1 - soft) * -2.0).sum((0, 2, 3))
    assert torch.allclose(gate.theta.grad, want, rtol=1e-3, atol=1e-5)


def test_random_matches_the_dense_cost_exactly_and_the_cheapest_reuse_only_cost():
    module = get_method("random").module()
    blocks, dense = [(100.0, 40.0), (60.0, 30.0)], 1000.0
    keep_all, reached = module.match_distribution(dense, dense, blocks, 8, (0.5, 0.5))
    assert reached and keep_all == pytest.approx((0.0, 0.0, 1.0))
    # reuse only: the cost is lowest inside (0, 1) (reusing everything recomputes conv1 at every frame)
    above, reached = module.match_distribution(2 * dense, dense, blocks, 8, (0.5, 0.5))
    assert not reached and above == pytest.approx((0.0, 0.0, 1.0))        # the closest: keep everything
    cheapest, reached = module.match_distribution(0.0, dense, blocks, 8, (0.0, 1.0))
    costs = [module.expected_flops((0.0, s, 1 - s), dense, blocks, 8) for s in torch.linspace(0, 1, 101).tolist()]
    assert not reached and module.expected_flops(cheapest, dense, blocks, 8) == pytest.approx(min(costs), rel=1e-3)


def test_cgnet_thresholds_train_in_the_weights_group():
    """As released: the 1-D gate thresholds get the weights' learning rate and weight decay, not the biases'."""
    model = build("cgnet")
    weights, biases, _ = param_groups(model, weight_decay=5e-4, bias_lr_mult=2.0)
    thetas = {id(gate.theta) for _, gate in model.gates}
    assert thetas <= {id(p) for p in weights["params"]} and not thetas & {id(p) for p in biases["params"]}


def test_cgnet_reports_the_open_share_of_every_gate():
    model = build("cgnet")
    stats = run(model).stats
    per_block = stats["gate_open_per_block"]                 # [videos, gates], what metrics.json lists per block
    assert per_block.shape == (3, len(model.gates)) and torch.allclose(per_block.mean(1), stats["gate_open"])
