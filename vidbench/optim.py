"""SGD (momentum), Adam and AdamW with torch.optim's update rules, written out in tensor operations.

They follow torch.optim's single-tensor path (its default on the CPU) operation for operation, so a CPU
run gives the same weights as torch.optim.SGD/Adam/AdamW; tests/test_optim.py checks this. The reason
for having them: every torch.optim step imports torch._dynamo, about 1 s of each short training job,
and the default run starts one such job per run. The state dict has torch.optim's layout and keys, so a
checkpoint written with either optimizer resumes with this one.
"""
from __future__ import annotations

import torch

KINDS = ("sgd", "adam", "adamw")


class Optimizer:
    """One of KINDS over parameter groups ({"params": [...], "lr": ..., "weight_decay": ...}); the
    interface the training loop and torch.amp.GradScaler use: param_groups, zero_grad, step, state_dict."""

    def __init__(self, groups, kind: str, lr: float, momentum: float = 0.9, betas=(0.9, 0.999), eps: float = 1e-8):
        if kind not in KINDS:
            raise ValueError(f"optimizer {kind!r}: expected one of {KINDS}")
        self.kind = kind
        defaults = {"lr": lr, "weight_decay": 0.0}
        defaults.update({"momentum": momentum} if kind == "sgd" else {"betas": tuple(betas), "eps": eps})
        self.param_groups = [{**defaults, **group, "params": list(group["params"])} for group in groups]
        self.state: dict[torch.Tensor, dict] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self._params():
            if param.grad is not None:
                if set_to_none:
                    param.grad = None
                else:
                    param.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        update = self._sgd if self.kind == "sgd" else self._adam
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    update(param, self.state.setdefault(param, {}), group)

    def _sgd(self, param, state, group) -> None:
        grad = param.grad
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        if group["momentum"] != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.detach().clone()
            else:
                state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
            grad = state["momentum_buffer"]
        param.add_(grad, alpha=-group["lr"])

    def _adam(self, param, state, group) -> None:
        if "step" not in state:
            state.update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(param, memory_format=torch.preserve_format),
                         exp_avg_sq=torch.zeros_like(param, memory_format=torch.preserve_format))
        grad, lr, decay, (beta1, beta2) = param.grad, group["lr"], group["weight_decay"], group["betas"]
        state["step"] += 1
        if decay != 0:
            if self.kind == "adamw":
                param.mul_(1 - lr * decay)
            else:
                grad = grad.add(param, alpha=decay)
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = state["step"].item()
        denom = (state["exp_avg_sq"].sqrt() / (1 - beta2 ** step) ** 0.5).add_(group["eps"])
        param.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1 ** step))

    def _params(self):
        return (param for group in self.param_groups for param in group["params"])

    def state_dict(self) -> dict:
        index = {param: i for i, param in enumerate(self._params())}
        groups, start = [], 0
        for group in self.param_groups:
            groups.append({**group, "params": list(range(start, start + len(group["params"])))})
            start += len(group["params"])
        return {"state": {index[param]: dict(state) for param, state in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, saved: dict) -> None:
        """Settings and per-parameter state from `saved` (this class's or torch.optim's state_dict), whose
        groups must hold as many parameters as this optimizer's."""
        if [len(g["params"]) for g in saved["param_groups"]] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("the saved optimizer state has groups of other sizes than this model's: "
                             f"{[len(g['params']) for g in saved['param_groups']]} vs "
                             f"{[len(g['params']) for g in self.param_groups]}")
        for group, saved_group in zip(self.param_groups, saved["param_groups"]):
            group.update({key: value for key, value in saved_group.items() if key in group and key != "params"})
        params = list(self._params())
        self.state = {params[int(i)]: _beside(params[int(i)], state) for i, state in saved["state"].items()}


def _beside(param: torch.Tensor, state: dict) -> dict:
    """A parameter's saved state with its buffers on the parameter's device (the step count stays on the CPU)."""
    return {key: value.to(param.device) if torch.is_tensor(value) and key != "step" else value
            for key, value in state.items()}


def step_lr(optimizer: Optimizer, base_lr: float, epoch: int, milestones, gamma: float) -> None:
    """The learning rate of epoch `epoch` (0-based) under MultiStepLR's schedule: base_lr x the group's
    lr_mult, times gamma for each milestone reached (lr_steps [4]: epochs 0-3 at base_lr, then x gamma)."""
    factor = gamma ** sum(epoch >= milestone for milestone in milestones)
    for group in optimizer.param_groups:
        group["lr"] = base_lr * group.get("lr_mult", 1.0) * factor
