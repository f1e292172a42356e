"""Every extra loss a method returns reaches the gradient through the trainer: the trainer's step follows
the gradient of cross entropy + the sum of the method's losses, AdaFuse's lambda lowers the FLOPs it
trains to, and the early-exit heads learn from their own cross entropies."""
import pytest
import torch
import torch.nn.functional as F

from vidbench import train as trainer
from vidbench.flops import attach
from vidbench.plugins import discover

T, SIZE, CLASSES = 4, 32, 5
# fixed distributions where a method would otherwise read another run's metrics
NEEDS = {"random": {"distribution": [0.3, 0.3, 0.4]}}


def build(method, **overrides):
    spec = discover()[method]
    cfg = {**spec.point_config("default"), **NEEDS.get(method, {}), **overrides}
    model = spec.build(cfg, backbone="resnet_tiny", num_classes=CLASSES, num_segments=T)
    return attach(model, (T, 3, SIZE, SIZE))


def trainer_gradients(model, clips, labels):
    """The gradient of the trainer's optimisation step on one batch (lr 0: the step changes nothing)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    torch.manual_seed(0)  # the same dropout masks and policy draws as the reference below
    trainer.train_step(model, clips, labels, optimizer, {"lr": 0.0}, epoch=0, step=1)
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def reference_gradients(model, clips, labels):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    out = model(clips)
    (F.cross_entropy(out.logits, labels) + sum(out.losses.values())).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}, out.losses


@pytest.mark.parametrize("method", sorted(discover()))
def test_trainer_follows_cross_entropy_plus_every_extra_loss(method):
    model = build(method).train()
    clips = torch.randn(4, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3])
    got = trainer_gradients(model, clips, labels)
    want, losses = reference_gradients(model, clips, labels)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.allclose(got[name], want[name], rtol=1e-4, atol=1e-7), name
    if method in ("adafuse", "cgnet", "earlyexit"):
        assert losses, f"{method} returns its extra loss in training"


def test_exit_heads_learn_from_their_own_cross_entropies():
    """The joint loss is the mean of the exits' cross entropies: each head's gradient is that of its own CE
    (divided by the number of exits), not that of the cross entropy of the averaged logits alone."""
    model = build("earlyexit", dropout=0.0).train()
    clips = torch.randn(4, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 2, 3])
    got = trainer_gradients(model, clips, labels)
    model.zero_grad(set_to_none=True)
    z = model.exit_logits(clips)
    torch.stack([F.cross_entropy(z[:, e], labels) for e in range(z.shape[1])]).mean().backward()
    for e, head in enumerate(model.heads):
        assert torch.allclose(got[f"heads.{e}.fc.weight"], head.fc.weight.grad, rtol=1e-4, atol=1e-7), e
        assert head.fc.weight.grad.abs().sum() > 0


def trained_gflops(train_spec, tmp_path, lam):
    spec = {**train_spec, "method": "adafuse", "point": "default"}
    spec["model"] = {**discover()["adafuse"].point_config("default"), "loss": "relative", "lam": lam,
                     "logit_scale": 10.0, "hidden": 32, "hidden_quota": None, "target": 0.0}
    # a large lambda makes the loss far above the cross entropy's chance level on purpose: not a divergence
    spec["train"] = {**train_spec["train"], "epochs": 3, "lr_steps": [3], "lr": 0.05, "on_divergence": "flag"}
    result = trainer.train(spec, tmp_path / f"lam{lam}", progress=False)
    return result["history"][-1]["gflops"]


def test_large_lambda_lowers_the_trained_flops(train_spec, tmp_path):
    free, charged = trained_gflops(train_spec, tmp_path, lam=0.0), trained_gflops(train_spec, tmp_path, lam=20.0)
    assert charged < 0.85 * free
