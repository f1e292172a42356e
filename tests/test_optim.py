"""vidbench.optim against torch.optim: the same weights step for step, resumable state, the same schedule."""
import subprocess
import sys

import pytest
import torch

from vidbench import optim

TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def model_and_groups(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.Linear(64, 5))
    weights = [p for p in model.parameters() if p.ndim > 1]
    others = [p for p in model.parameters() if p.ndim == 1]
    return model, [{"params": weights, "lr": 0.05, "weight_decay": 5e-4}, {"params": others, "lr": 0.1, "weight_decay": 0.0}]


def batches(count, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(6, 3, 6, 6, generator=generator), torch.randint(0, 5, (6,), generator=generator))
            for _ in range(count)]


def run_steps(model, optimizer, steps):
    for x, labels in steps:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def make(kind, groups, library):
    kwargs = {"momentum": 0.9} if kind == "sgd" else {}
    if library == "torch":
        return TORCH[kind](groups, lr=0.05, **kwargs)
    return optim.Optimizer(groups, kind, lr=0.05, **kwargs)


@pytest.mark.parametrize("kind", optim.KINDS)
def test_the_same_weights_as_torch_optim(kind):
    model, groups = model_and_groups()
    ours = run_steps(model, make(kind, groups, "vidbench"), batches(6))
    model, groups = model_and_groups()
    theirs = run_steps(model, make(kind, groups, "torch"), batches(6))
    start = [p.detach() for p in model_and_groups()[0].parameters()]
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))   # CPU: torch.optim's single-tensor path, bit for bit
    assert not any(torch.equal(a, b) for a, b in zip(ours, start))


@pytest.mark.parametrize("kind", optim.KINDS)
@pytest.mark.parametrize("saved_by", ["vidbench", "torch"])
def test_a_saved_state_resumes_to_the_same_weights(kind, saved_by):
    steps = batches(5)
    model, groups = model_and_groups()
    straight = run_steps(model, make(kind, groups, "vidbench"), steps)
    model, groups = model_and_groups()
    first = make(kind, groups, saved_by)
    run_steps(model, first, steps[:3])
    resumed = make(kind, groups, "vidbench")
    resumed.load_state_dict(first.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(straight, run_steps(model, resumed, steps[3:])))


def test_a_state_for_other_groups_is_refused():
    model, groups = model_and_groups()
    optimizer = make("adam", groups, "vidbench")
    run_steps(model, optimizer, batches(1))
    other = make("adam", [groups[0]], "vidbench")
    with pytest.raises(ValueError, match="groups of other sizes"):
        other.load_state_dict(optimizer.state_dict())


def test_the_schedule_is_multisteplr():
    _, groups = model_and_groups()
    for group in groups:
        group["lr_mult"] = group["lr"] / 0.05
    ours = make("sgd", [dict(g) for g in groups], "vidbench")
    reference = make("sgd", [dict(g) for g in groups], "torch")
    scheduler = torch.optim.lr_scheduler.MultiStepLR(reference, [2, 4], 0.1)
    for epoch in range(6):
        optim.step_lr(ours, 0.05, epoch, [2, 4], 0.1)
        assert [g["lr"] for g in ours.param_groups] == pytest.approx([g["lr"] for g in reference.param_groups])
        reference.step()
        scheduler.step()


def test_training_does_not_import_torch_dynamo():
    """The reason the module exists: torch.optim's first step imports torch._dynamo (about 1 s)."""
    code = ("import sys, torch; from vidbench import optim; m = torch.nn.Linear(2, 2); "
            "o = optim.Optimizer([{'params': list(m.parameters())}], 'adam', lr=0.1); "
            "m(torch.ones(1, 2)).sum().backward(); o.step(); o.zero_grad(); o.load_state_dict(o.state_dict()); "
            "print('torch._dynamo' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
