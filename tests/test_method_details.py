"""Details of the methods that the rest of the suite left unchecked (found by mutation testing, see the
README): options reach the model, CGNet's gate computes and learns as described, the random policy's FLOP
matching at its edges, and what early exit reports."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidbench.exits import STRICT
from vidbench.flops import attach
from vidbench.plugins import get_method

T, SIZE, CLASSES = 4, 32, 5


def build(method, **overrides):
    spec = get_method(method)
    torch.manual_seed(0)
    model = spec.build({**spec.point_config("default"), **overrides}, backbone="resnet_tiny", num_classes=CLASSES,
                       num_segments=T)
    return attach(model, (T, 3, SIZE, SIZE))


def test_tsm_shift_div_option_is_used():
    shift = build("tsm", shift_div=4).backbone.layer2[0].shift
    x = torch.arange(1, T + 1, dtype=torch.float).view(T, 1, 1, 1).expand(T, 16, 1, 1).contiguous()
    assert (shift(x).view(T, 16)[1] == 3).sum().item() == 16 // 4      # a quarter from the next frame


def test_cgnet_theta_target_option_is_used():
    model = build("cgnet", theta_target=0.0, theta_weight=1.0).train()
    out = model(torch.randn(2, T, 3, SIZE, SIZE))
    assert out.losses["theta"].item() == 0.0          # theta starts at the target


def test_threshold_refuses_a_keep_ratio_of_zero():
    with pytest.raises(ValueError, match="keep_ratio"):
        build("threshold", keep_ratio=0.0)


def test_msdnet_checkpoints_are_named_from_one():
    assert build("earlyexit_msdnet").checkpoint_names() == ["block1", "block2", "block3"]


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
    cheapest, reached = module.match_distribution(0.0, dense, blocks, 8, (0.0, 1.0))
    costs = [module.expected_flops((0.0, s, 1 - s), dense, blocks, 8) for s in torch.linspace(0, 1, 101).tolist()]
    assert not reached and module.expected_flops(cheapest, dense, blocks, 8) == pytest.approx(min(costs), rel=1e-3)


def test_frame_exits_average_the_frame_logits_seen_so_far():
    model = build("earlyexit_frames").eval()
    x = torch.randn(2, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        frame_logits = model.fc(model.backbone(x.flatten(0, 1))).view(2, T, -1)
        exits = model.exit_logits(x)
    for n in model.frames:
        assert torch.allclose(exits[:, model.frames.index(n)], frame_logits[:, :n].mean(1), atol=1e-5)


def test_early_exit_reports_its_checkpoints_and_labels_its_thresholds():
    model = build("earlyexit", sweep=[0.0, 0.5, STRICT]).eval()
    with torch.no_grad():
        out = model(torch.randn(3, T, 3, SIZE, SIZE))
    outputs = {"labels": torch.tensor([0, 1, 2]), **{f"stats.{k}": v for k, v in out.stats.items()}}
    assert [p["point"] for p in model.eval_points(outputs)] == ["first exit", "thr 0.5", "no early exit"]
    summary = model.summarize({k: v.mean(0).tolist() for k, v in out.stats.items()})
    assert summary["exit_checkpoints"] == ["layer2", "layer3", "layer4"]
    assert summary["checkpoint_gflops"] == pytest.approx([c / 1e9 for c in model.exit_costs().tolist()])


def test_the_last_exit_is_tsn_on_the_whole_backbone():
    model = build("earlyexit").eval()
    x = torch.randn(2, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tsn = model.heads[-1].fc(model.backbone(x.flatten(0, 1))).view(2, T, -1).mean(1)
        assert torch.allclose(model.exit_logits(x)[:, -1], tsn, atol=1e-5)
