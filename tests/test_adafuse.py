"""AdaFuse plugin: parameter counts of the paper, Eq. 5 FLOPs under forced policies, sampling, ablations."""
import pytest
import torch

from vidbench.flops import attach, count_params
from vidbench.hooks import TemporalShift
from vidbench.plugins import get_method
from vidbench.policy import KEEP, REUSE, SKIP, eq5_flops, one_hot

METHOD = get_method("adafuse")


def build(backbone="resnet_tiny", point="default", classes=174, frames=8, size=None, count=True, **overrides):
    cfg = {**METHOD.point_config(point), **overrides}
    model = METHOD.build(cfg, backbone=backbone, num_classes=classes, num_segments=frames)
    if count:
        size = size or (32 if backbone == "resnet_tiny" else 224)
        attach(model, (frames, 3, size, size))
    return model


def policy_cost(model):
    return sum(v for k, v in model.costs.items() if k.startswith("backbone.") and k.endswith(".policy"))


@pytest.mark.parametrize("backbone, point, overrides, millions", [
    ("resnet18", "default", {}, 15.58),                  # AdaFuse-R18-TSN: H=512, shared fc
    ("resnet50", "default", {}, 37.69),                  # AdaFuse-R50-TSN: quota 196608, shared fc
    ("resnet50", "tsm", {}, 37.69),                      # AdaFuse-R50-TSM
    ("resnet50", "tsm-last", {}, 39.08),                 # AdaFuse-R50-TSM+Last: H=1024, last stage, not shared
    ("resnet50", "tsm-last", {"hidden": 2048}, 54.30),   # Table 7
    ("resnet50", "tsm-last", {"hidden": 4096}, 84.72),   # Table 7
])
def test_params_match_paper(backbone, point, overrides, millions):
    model = build(backbone, point, count=False, **overrides)
    assert round(count_params(model) / 1e6, 2) == millions
    assert round(count_params(model) / 1e6, 1) == round(millions, 1)


def test_hidden_quota_sizes():
    model = build("resnet50", count=False)
    sizes = {name: hook.fc1.out_features for name, hook in
             ((n, b.policy) for n, b in model.backbone.blocks())}
    assert sizes["layer1.0"] == 3072 and sizes["layer2.0"] == 1536
    assert sizes["layer3.0"] == 768 and sizes["layer4.2"] == 384
    blocks = dict(model.backbone.blocks())
    assert blocks["layer1.1"].policy.fc1 is blocks["layer1.2"].policy.fc1          # shared fc
    assert blocks["layer1.1"].policy.bn is not blocks["layer1.2"].policy.bn         # BN per block


@pytest.mark.parametrize("backbone", ["resnet18", "resnet_tiny"])
def test_all_keep_costs_dense_backbone_plus_policy_nets(backbone):
    model = build(backbone, force="keep", classes=174 if backbone == "resnet18" else 10).eval()
    tsn_method = get_method("tsn")
    tsn = tsn_method.build(tsn_method.point_config("default"), backbone=backbone,
                           num_classes=174 if backbone == "resnet18" else 10, num_segments=8)
    size = 224 if backbone == "resnet18" else 32
    attach(tsn, (8, 3, size, size))
    assert policy_cost(model) > 0
    assert model.dense_flops == tsn.dense_flops + policy_cost(model)
    with torch.no_grad():
        out = model(torch.randn(1, 8, 3, size, size))
    assert out.flops.item() == pytest.approx(model.dense_flops, rel=1e-9)
    assert out.stats["actions"][0, KEEP].item() == 1.0


@pytest.mark.parametrize("action", ["skip", "reuse"])
def test_forced_policy_flops_by_hand(action):
    model = build(force=action, classes=10, frames=4).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 4, 3, 32, 32))
    expected = model.dense_flops
    for _, block in model.backbone.blocks():
        hook = block.policy
        m1, m2 = model.cost(hook.conv1_name), model.cost(hook.conv2_name)
        # skip: neither conv runs; reuse: conv1 runs on frames 0..T-2 only, conv2 on every frame
        expected -= m1 + m2 if action == "skip" else m1 / 4
    assert out.flops.double() == pytest.approx([expected] * 2, rel=1e-9)


def test_random_policy_flops_by_eq5():
    model = build(classes=10, frames=4, init_std=1.0).train()   # large logits: varied actions
    out = model(torch.randn(2, 4, 3, 32, 32))
    expected = torch.full((2,), model.dense_flops, dtype=torch.float64)
    for _, block in model.backbone.blocks():
        hook = block.policy
        m1, m2 = model.cost(hook.conv1_name), model.cost(hook.conv2_name)
        expected -= m1 + m2 - eq5_flops(hook.actions.detach().double(), m1 / 4, m2 / 4)
    assert torch.allclose(out.flops.detach().double(), expected, rtol=1e-6)


def test_gumbel_is_one_hot_and_trains_the_policy():
    torch.manual_seed(0)
    model = build(classes=10, frames=4).train()
    out = model(torch.randn(2, 4, 3, 32, 32))
    for _, block in model.backbone.blocks():
        actions = block.policy.actions
        assert torch.all((actions == 0) | (actions == 1)) and torch.all(actions.sum(-1) == 1)
    assert "efficiency" in out.losses
    (out.logits.sum() + out.losses["efficiency"]).backward()
    hook = model.backbone.layer2[0].policy
    assert hook.fc2.weight.grad is not None and hook.fc2.weight.grad.abs().sum() > 0
    assert hook.fc1.weight.grad.abs().sum() > 0


def test_efficiency_loss_lowers_flops():
    torch.manual_seed(0)
    model = build(classes=10, frames=4, loss="relative", lam=1.0, init_std=0.01).train()
    params = [p for n, p in model.named_parameters() if ".policy." in n]
    optim = torch.optim.Adam(params, lr=0.05)
    clips = torch.randn(4, 4, 3, 32, 32)
    first = model(clips).flops.mean().item()
    for _ in range(15):
        out = model(clips)
        optim.zero_grad()
        out.losses["efficiency"].backward()
        optim.step()
    assert model(clips).flops.mean().item() < 0.8 * first


def test_loss_forms():
    flops = torch.tensor([4e9, 2e9])
    for form, lam, target, want in [("gflops", 0.1, 0, 0.1 * 3e9 / 8 / 1e9), ("relative", 2.0, 0, 2.0 * 0.75),
                                    ("normalised", 2.0, 0.5, 2.0 * 0.25 ** 2)]:
        model = build(classes=10, count=False, loss=form, lam=lam, target=target).train()
        model.dense_flops = 4e9
        from vidbench.policy import efficiency_loss
        assert efficiency_loss(flops, 4e9, 8, lam, form, target).item() == pytest.approx(want)
        assert model.efficiency == {"lam": lam, "form": form, "target": float(target), "flops": "eq5"}


@pytest.mark.parametrize("action, conv1_saved", [("skip", 1.0), ("reuse", 1 / 4), ("keep", 0.0)])  # of 4 frames
def test_upper_bound_loss_charges_conv1_as_dense(action, conv1_saved):
    """The released Something-V1 loss: conv1 counted dense, only conv2's savings from skipping."""
    torch.manual_seed(0)
    clips = torch.randn(2, 4, 3, 32, 32)
    losses = {}
    for flops in ("eq5", "upper_bound"):
        model = build(force=action, classes=10, frames=4, loss="gflops", lam=1.0, loss_flops=flops).train()
        out = model(clips)
        losses[flops] = out.losses["efficiency"].item()
        reported = out.flops
    hooks = model.hooks()
    conv1 = sum(model.cost(hook.conv1_name) for hook in hooks)  # dense, all 4 frames
    assert losses["upper_bound"] - losses["eq5"] == pytest.approx(conv1 * conv1_saved / 4 / 1e9, rel=1e-5)
    assert losses["eq5"] == pytest.approx(reported.mean().item() / 4 / 1e9, rel=1e-5)  # what is reported
    with pytest.raises(ValueError, match="loss_flops must be eq5 or upper_bound"):
        build(count=False, loss_flops="real")


def test_per_backbone_defaults():
    assert build("resnet18", count=False).efficiency == {"lam": 0.1, "form": "gflops", "target": 0.0,
                                                         "flops": "eq5"}
    assert build("resnet18", count=False).backbone.layer1[0].policy.logit_scale == 1.0
    tiny = build(count=False)
    assert tiny.efficiency["form"] == "normalised" and tiny.backbone.layer1[0].policy.fc1.out_features == 32
    assert tiny.backbone.layer1[0].policy.logit_scale == 10.0
    assert tiny.efficiency["lam"] == 2.0


@pytest.mark.parametrize("point, never", [("skip-only", REUSE), ("reuse-only", SKIP)])
def test_ablations_never_take_the_excluded_action(point, never):
    torch.manual_seed(0)
    model = build(point=point, classes=10, frames=4, init_std=1.0)
    for mode in (True, False):
        model.train(mode)
        with torch.no_grad():
            out = model(torch.randn(3, 4, 3, 32, 32))
        assert torch.all(out.stats["actions"][:, never] == 0)
        assert torch.all(out.stats["per_block"][..., never] == 0)


def test_eval_is_deterministic_argmax_or_seeded_gumbel():
    model = build(classes=10, frames=4, init_std=1.0).eval()
    clips = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        a, b = model(clips), model(clips)
    assert torch.equal(a.flops, b.flops) and torch.equal(a.logits, b.logits)
    sampled = build(classes=10, frames=4, init_std=1.0, eval_sampling="gumbel")
    sampled.load_state_dict(model.state_dict())
    sampled.eval()
    with torch.no_grad():
        torch.manual_seed(3)
        c = sampled(clips)
        torch.manual_seed(3)
        d = sampled(clips)
    assert torch.equal(c.flops, d.flops)
    assert not torch.equal(c.stats["per_block"], a.stats["per_block"])


def test_tsm_variant_shifts_block_input_and_shortcut():
    model = build(point="tsm-last", classes=10, count=False)
    for name, block in model.backbone.blocks():
        assert isinstance(block.shift, TemporalShift) and block.shift_shortcut
        has_policy = hasattr(block.policy, "fc1")
        assert has_policy == name.startswith("layer4")
    assert not build(classes=10, count=False).backbone.layer1[0].shift_shortcut


def test_summary_from_evaluator_means():
    model = build(classes=10, frames=4, init_std=1.0).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 4, 3, 32, 32))
    summary = model.summarize({k: v.double().mean(0).tolist() for k, v in out.stats.items()})
    assert set(summary) >= {"skip", "reuse", "keep", "reuse_over_keep", "per_block", "static_share"}
    assert summary["skip"] + summary["reuse"] + summary["keep"] == pytest.approx(1.0)
    assert len(summary["per_block"]) == 4 and summary["per_block"][0]["block"] == "layer1.0"


def test_method_manifest_points():
    assert METHOD.title == "AdaFuse" and METHOD.paper_label == "AdaFuse"
    assert {"default", "tsm", "tsm-last", "skip-only", "reuse-only", "lam-lo", "lam-hi"} <= set(METHOD.operating_points)
    assert one_hot(torch.tensor([KEEP])).tolist() == [[0.0, 0.0, 1.0]]


def test_gumbel_samples_follow_the_policy_probabilities():
    gumbel_hard = METHOD.module().gumbel_hard
    probs = torch.tensor([0.6, 0.3, 0.1])
    draws = gumbel_hard(probs.log().expand(20000, 3), 0.67, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(draws.mean(0), probs, atol=0.015)


def test_gumbel_gradient_is_that_of_the_tempered_softmax():
    gumbel_hard = METHOD.module().gumbel_hard
    log_probs = torch.randn(5, 3).log_softmax(-1).requires_grad_()
    weights = torch.randn(5, 3)
    (gumbel_hard(log_probs, 0.67, generator=torch.Generator().manual_seed(1)) * weights).sum().backward()
    uniform = torch.rand(5, 3, generator=torch.Generator().manual_seed(1)).clamp(1e-10, 1.0 - 1e-7)
    reference = log_probs.detach().clone().requires_grad_()
    ((reference - torch.log(-torch.log(uniform))) / 0.67).softmax(-1).mul(weights).sum().backward()
    assert torch.allclose(log_probs.grad, reference.grad, atol=1e-6)


def test_the_argmax_eval_point_reports_the_argmax_policy_accuracy_and_flops():
    model = build()
    logits = torch.tensor([[0.1, 0.9, 0.0, 0.0, 0.0], [0.8, 0.1, 0.0, 0.0, 0.0]])
    outputs = {"stats.argmax_logits": logits, "labels": torch.tensor([1, 1]),
               "stats.argmax_flops": torch.tensor([2e9, 4e9])}
    (point,) = model.eval_points(outputs)
    assert point["point"] == "argmax" and point["top1"] == 50.0 and point["gflops"] == pytest.approx(3.0)
    assert model.eval_points({"labels": torch.tensor([1])}) == []


def test_the_gumbel_temperature_option_reaches_every_policy():
    assert {hook.tau for hook in build(tau=0.3, count=False).hooks()} == {0.3}
