"""AdaFuse (Meng et al., ICLR 2021): a policy net per residual block decides, per channel and frame,
whether conv1's output is kept, reused from frame t-1 or skipped (Eq. 2-7). Mechanics and the Eq. 5
cost live in `vidbench.policy`; this module holds the learned policy net and the options.

Any option may be given per backbone as a mapping {<backbone>: value, default: value}, e.g.
`hidden: {resnet18: 512, resnet_tiny: 32}` (the paper's hidden size does not suit a 1000x smaller net).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidbench.hooks import install_shift
from vidbench.model import make_backbone
from vidbench.policy import ACTIONS, PolicyClassifier, PolicyHook, install_policies, one_hot, previous_frame

FORCE = {None: None, "none": None, "skip": 0, "reuse": 1, "keep": 2}


def gumbel_hard(log_probs: torch.Tensor, tau: float, allowed: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Hard Gumbel-Softmax with a straight-through gradient over the last dim (Eq. 7).

    `allowed` [3] bool masks actions out of the sample (they are never drawn, whatever the noise)."""
    uniform = torch.rand(log_probs.shape, generator=generator, device=log_probs.device, dtype=log_probs.dtype)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))
    scores = (log_probs + gumbel) / tau
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    soft = scores.softmax(-1)
    hard = one_hot(soft.argmax(-1), soft.dtype)
    return hard - soft.detach() + soft


class AdaFuseHook(PolicyHook):
    """Policy net g(v_{t-1}, v_t) of one block: Linear(2*C_in, H) -> BN1d(H) -> ReLU -> Linear(H, 3*C).

    `fc1` / `fc2` may be shared with other blocks of equal shape; `bn` is always the block's own."""

    def __init__(self, num_segments, fc1: nn.Linear, fc2: nn.Linear, *, tau=0.67, eval_sampling="argmax",
                 allowed=("skip", "reuse", "keep"), force=None, logit_scale=1.0):
        super().__init__(num_segments)
        self.fc1, self.fc2 = fc1, fc2
        self.bn = nn.BatchNorm1d(fc1.out_features)
        self.tau, self.eval_sampling = float(tau), eval_sampling
        self.force = FORCE[force]
        self.logit_scale = float(logit_scale)
        mask = torch.tensor([a in allowed for a in ACTIONS])
        self.register_buffer("allowed", mask, persistent=False)
        self.restricted = not bool(mask.all())

    def logits(self, branch: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(branch, 1).flatten(1)                  # [N*T, C_in]
        history = previous_frame(pooled, self.num_segments)                   # v_{t-1}, zeros at t = 0
        hidden = F.relu(self.bn(self.fc1(torch.cat([history, pooled], 1))))
        logits = self.fc2(hidden).view(pooled.shape[0], -1, 3)               # [N*T, C, 3]
        return logits * self.logit_scale if self.logit_scale != 1.0 else logits

    def decide(self, out, branch):
        logits = self.logits(branch)
        if self.force is not None:
            index = torch.full(logits.shape[:2], self.force, device=logits.device)
            return one_hot(index, logits.dtype)
        if self.restricted:
            logits = logits.masked_fill(~self.allowed, float("-inf"))
        log_probs = torch.log(logits.softmax(-1).clamp(min=1e-8))
        allowed = self.allowed if self.restricted else None
        if self.training or (self.eval_sampling == "gumbel" and not torch.jit.is_tracing()):
            # evaluation draws use the global RNG, which the evaluator seeds with the run's seed
            return gumbel_hard(log_probs, self.tau, allowed)
        return one_hot(log_probs.argmax(-1), logits.dtype)


def build(cfg, *, backbone, num_classes, num_segments):
    net = make_backbone(backbone, cfg)
    if cfg.get("shift"):
        install_shift(net, num_segments, int(cfg.get("shift_div", 8)), shortcut=True)
    allowed = tuple(cfg.get("actions") or ACTIONS)
    unknown = set(allowed) - set(ACTIONS)
    if unknown or "keep" not in allowed:
        raise ValueError(f"adafuse: actions must be a subset of {ACTIONS} containing 'keep', got {allowed}")
    eval_sampling = cfg.get("eval_sampling", "argmax")
    if eval_sampling not in ("argmax", "gumbel"):
        raise ValueError(f"adafuse: eval_sampling must be argmax or gumbel, got {eval_sampling!r}")
    if cfg.get("force") not in FORCE:
        raise ValueError(f"adafuse: force must be null, keep, reuse or skip, got {cfg.get('force')!r}")
    shared: dict[tuple[int, int, int], tuple[nn.Linear, nn.Linear]] = {}

    def make_hook(name, block):
        c_in, width = block.conv1.in_channels, block.width
        if cfg.get("hidden_quota"):
            hidden = int(cfg["hidden_quota"]) // width
        else:
            hidden = int(cfg["hidden"])
        key = (2 * c_in, hidden, 3 * width)
        if cfg.get("share_fc") and key in shared:
            fc1, fc2 = shared[key]
        else:
            fc1, fc2 = nn.Linear(2 * c_in, hidden), nn.Linear(hidden, 3 * width)
            for fc in (fc1, fc2):
                nn.init.normal_(fc.weight, 0.0, float(cfg.get("init_std", 0.001)))
                nn.init.zeros_(fc.bias)
            shared[key] = (fc1, fc2)
        return AdaFuseHook(num_segments, fc1, fc2, tau=cfg.get("tau", 0.67), eval_sampling=eval_sampling,
                           allowed=allowed, force=cfg.get("force"),
                           logit_scale=float(cfg.get("logit_scale", 1.0) or 1.0))

    stages = [int(s) for s in (cfg.get("stages") or (1, 2, 3, 4))]
    install_policies(net, make_hook, stages=stages)
    efficiency = {"lam": float(cfg.get("lam", 0.0) or 0.0), "form": cfg.get("loss", "gflops"),
                  "target": float(cfg.get("target", 0.0) or 0.0), "flops": cfg.get("loss_flops", "eq5")}
    if efficiency["form"] not in ("gflops", "relative", "normalised"):
        raise ValueError(f"adafuse: loss must be gflops, relative or normalised, got {efficiency['form']!r}")
    if efficiency["flops"] not in ("eq5", "upper_bound"):
        raise ValueError(f"adafuse: loss_flops must be eq5 or upper_bound, got {efficiency['flops']!r}")
    return PolicyClassifier(net, num_classes, num_segments, cfg.get("dropout", 0.5), efficiency)

