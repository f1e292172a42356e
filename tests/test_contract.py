"""The contract every method plugin keeps, checked over every directory of methods/ with a method.yaml
(`_template` included), as timm tests every registered model: a new plugin is covered with no test of its own.

- forward: logits [B, K], per-video FLOPs [B] no larger than the dense count, scalar losses, stats [B, ...];
- backward: cross entropy + the extra losses reach every trainable parameter (policy and gate nets too);
- evaluation is deterministic;
- training and evaluation mode give the same outputs with `dropout: 0` and BatchNorm on running statistics,
  except the fields the manifest's `train_differs` names, which must differ.
"""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidbench.flops import attach
from vidbench.plugins import load_manifest, methods_dir

T, SIZE, CLASSES, BATCH = 4, 32, 5, 3
PLUGINS = sorted(path for path in methods_dir().iterdir() if (path / "method.yaml").is_file())


@pytest.fixture(scope="module", params=PLUGINS, ids=lambda path: path.name)
def plugin(request):
    return load_manifest(request.param)


@pytest.fixture(scope="module")
def model(plugin, tmp_path_factory):
    """The plugin's default model on resnet_tiny (built once a plugin: each test sets the mode it needs)."""
    return build(plugin, tmp_path_factory)


def build(plugin, tmp_path_factory, **overrides):
    cfg = {**plugin.point_config("default"), **overrides}
    if plugin.requires:   # a run it reads: a stand-in metrics.json (what an AdaFuse-like evaluation writes)
        folder = tmp_path_factory.mktemp("requires")
        cfg["requires"] = {name: str(stand_in_metrics(folder / f"{name}.json")) for name in plugin.requires}
    torch.manual_seed(0)
    built = plugin.build(cfg, backbone="resnet_tiny", num_classes=CLASSES, num_segments=T)
    return attach(built, (T, 3, SIZE, SIZE))


def stand_in_metrics(path):
    path.write_text(json.dumps({"gflops": 1e-3, "stats": {"skip": 0.3, "reuse": 0.2, "keep": 0.5}}))
    return path


def clips(seed=0):
    return torch.randn(BATCH, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def forward(model, training: bool, seed=0):
    model.train(training)
    torch.manual_seed(seed)
    return model(clips())


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_forward_shapes_and_flops_no_larger_than_dense(model, training):
    with torch.no_grad():
        out = forward(model, training)
    assert out.logits.shape == (BATCH, CLASSES) and torch.isfinite(out.logits).all()
    assert out.flops.shape == (BATCH,) and torch.isfinite(out.flops).all()
    assert model.dense_flops > 0
    assert torch.all(out.flops > 0) and torch.all(out.flops <= model.dense_flops * (1 + 1e-6))
    for name, loss in out.losses.items():
        assert loss.dim() == 0 and torch.isfinite(loss), name
    for name, value in out.stats.items():
        assert value.shape[0] == BATCH, name


def test_backward_reaches_every_trainable_parameter(model):
    model.zero_grad(set_to_none=True)
    out = forward(model, training=True)
    labels = torch.arange(BATCH) % CLASSES
    (F.cross_entropy(out.logits, labels) + sum(out.losses.values())).backward()
    unreached = [name for name, p in model.named_parameters()
                 if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not unreached


def test_evaluation_is_deterministic(model):
    with torch.no_grad():
        first = forward(model, training=False)
        model.train()                     # a round trip through training mode changes nothing either
        second = forward(model, training=False)
    assert torch.equal(first.logits, second.logits) and torch.equal(first.flops, second.flops)
    assert first.stats.keys() == second.stats.keys()
    assert all(torch.equal(first.stats[k], second.stats[k]) for k in first.stats)


def batchnorm_in_eval(model):
    """Training mode, with BatchNorm using its running statistics as in evaluation."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def same(a, b) -> bool:
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5)


def test_train_and_eval_differ_only_where_the_method_says(plugin, tmp_path_factory):
    """With `dropout: 0` (the option must reach every dropout layer) and BatchNorm on running statistics."""
    model = build(plugin, tmp_path_factory, **({"dropout": 0.0} if "dropout" in plugin.defaults else {}))
    with torch.no_grad():
        evaluated = forward(model, training=False)
        batchnorm_in_eval(model)
        torch.manual_seed(0)
        trained = model(clips())
    differs = set(plugin.train_differs)
    # a field the manifest names must differ too: else evaluation could run the training behaviour unseen
    assert same(trained.logits, evaluated.logits) != ("logits" in differs), plugin.name
    assert same(trained.flops, evaluated.flops) != ("flops" in differs), plugin.name
    same_stats = trained.stats.keys() == evaluated.stats.keys() and all(
        same(trained.stats[k], evaluated.stats[k]) for k in trained.stats)
    assert same_stats != ("stats" in differs), plugin.name


def test_the_classifier_is_initialised_with_fc_init_std(plugin, tmp_path_factory):
    """As released (N(0, std), zero bias) where the method has the option."""
    if "fc_init_std" not in plugin.defaults:
        pytest.skip(f"{plugin.name} has no fc_init_std option")
    fc = build(plugin, tmp_path_factory, fc_init_std=0.5).fc
    assert fc.weight.std().item() == pytest.approx(0.5, rel=0.25) and not fc.bias.any()
    assert abs(fc.weight.mean().item()) < 0.1                                       # zero-mean
