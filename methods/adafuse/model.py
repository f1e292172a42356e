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
from vidbench.metrics import accuracy
from vidbench.model import init_classifier, make_backbone
from vidbench.policy import ACTIONS, KEEP, PolicyClassifier, PolicyHook, install_policies, one_hot, previous_frame

FORCE = {None: None, "none": None, "skip": 0, "reuse": 1, "keep": 2}


def gumbel_hard(log_probs: torch.Tensor, tau: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Hard Gumbel-Softmax with a straight-through gradient over the last dim (Eq. 7)."""
    uniform = torch.rand(log_probs.shape, generator=generator, device=log_probs.device, dtype=log_probs.dtype)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))
    soft = ((log_probs + gumbel) / tau).softmax(-1)
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


class AdaFuseHook(PolicyHook):
    """Policy net g of one block: Linear(in, H) -> BN1d(H) -> ReLU -> Linear(H, A*C) over the A allowed
    actions. Its input is [v_{t-1}, v_t] (2*C_in) when reuse is allowed, else v_t alone (C_in): the
    released code feeds the history only to policies that can reuse (Ada.Skip sees frame t only).

    `fc1` / `fc2` may be shared with other blocks of equal shape; `bn` is always the block's own."""

    def __init__(self, num_segments, fc1: nn.Linear, fc2: nn.Linear, *, tau=0.67, eval_sampling="argmax",
                 allowed=ACTIONS, force=None, logit_scale=1.0):
        super().__init__(num_segments)
        self.fc1, self.fc2 = fc1, fc2
        self.bn = nn.BatchNorm1d(fc1.out_features)
        self.tau, self.eval_sampling = float(tau), eval_sampling
        self.force = FORCE[force]
        self.logit_scale = float(logit_scale)
        self.history = "reuse" in allowed
        # the places of the A sampled actions in [skip, reuse, keep]
        self.register_buffer("places", torch.tensor([ACTIONS.index(a) for a in ACTIONS if a in allowed]),
                             persistent=False)

    def logits(self, branch: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(branch, 1).flatten(1)                  # [N*T, C_in]
        if self.history:
            pooled = torch.cat([previous_frame(pooled, self.num_segments), pooled], 1)  # v_{t-1} (0 at t = 0), v_t
        hidden = F.relu(self.bn(self.fc1(pooled)))
        logits = self.fc2(hidden).view(pooled.shape[0], -1, len(self.places))      # [N*T, C, A]
        return logits * self.logit_scale if self.logit_scale != 1.0 else logits

    def decide(self, out, branch):
        logits = self.logits(branch)
        if self.force is not None:
            index = torch.full(logits.shape[:2], self.force, device=logits.device)
            return one_hot(index, logits.dtype)
        log_probs = torch.log(logits.softmax(-1).clamp(min=1e-8))
        if self.training or (self.eval_sampling == "gumbel" and not torch.jit.is_tracing()):
            # evaluation draws use the global RNG, which the evaluator seeds with the run's seed
            sampled = gumbel_hard(log_probs, self.tau)
        else:
            sampled = F.one_hot(log_probs.argmax(-1), log_probs.shape[-1]).to(log_probs.dtype)
        # a copy, not a product with a placement matrix: fvcore would count that as policy FLOPs
        return sampled.new_zeros(*sampled.shape[:-1], len(ACTIONS)).index_copy(-1, self.places, sampled)


class AdaFuseClassifier(PolicyClassifier):
    """Adds two evaluation figures to the policy classifier's:
    - `released_flops`: the cost as the released FLOPs code counts it, which at the last frame takes frame
      T-2's keep mask where Eq. 5 takes frame T-1's (the reported `flops` keep Eq. 5);
    - evaluated with sampled policies (`eval_sampling: gumbel`, as released), every batch also runs the
      argmax policy, and `eval_points` reports that figure as the point "argmax"."""

    def forward(self, clips):
        out = super().forward(clips)
        hooks = self.hooks()
        if not hooks:
            return out
        out.stats["released_flops"] = (out.flops + self.released_last_frame(hooks)).detach()
        if self.training or hooks[0].eval_sampling != "gumbel" or torch.jit.is_tracing():
            return out
        for hook in hooks:
            hook.eval_sampling = "argmax"
        try:
            deterministic = super().forward(clips)
        finally:
            for hook in hooks:
                hook.eval_sampling = "gumbel"
        out.stats.update(argmax_logits=deterministic.logits, argmax_flops=deterministic.flops)
        return out

    def released_last_frame(self, hooks) -> torch.Tensor:
        """[B] MACs the released code's last-frame lookup adds to Eq. 5 (negative where it saves more)."""
        extra = torch.zeros(hooks[0].actions.shape[0], device=hooks[0].actions.device)
        if self.num_segments < 2:
            return extra
        for hook in hooks:
            keep = hook.actions[..., KEEP]                                      # [B, T, C]
            conv1 = self.cost(hook.conv1_name) / self.num_segments
            extra = extra + (keep[:, -2] - keep[:, -1]).mean(-1) * conv1
        return extra

    def eval_points(self, outputs: dict) -> list[dict]:
        if "stats.argmax_logits" not in outputs:
            return []
        top1, top5 = accuracy(outputs["stats.argmax_logits"], outputs["labels"])
        return [{"point": "argmax", "top1": top1, "top5": top5,
                 "gflops": outputs["stats.argmax_flops"].double().mean().item() / 1e9}]

    def summarize(self, stats: dict) -> dict:
        summary = super().summarize({k: v for k, v in stats.items()
                                     if not k.startswith("argmax_") and k != "released_flops"})
        if "released_flops" in stats:
            summary["released_gflops"] = float(stats["released_flops"]) / 1e9
        return summary


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
        inputs = 2 * c_in if "reuse" in allowed else c_in
        key = (inputs, hidden, len(allowed) * width)
        if cfg.get("share_fc") and key in shared:
            fc1, fc2 = shared[key]
        else:
            fc1, fc2 = nn.Linear(inputs, hidden), nn.Linear(hidden, len(allowed) * width)
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
    model = AdaFuseClassifier(net, num_classes, num_segments, cfg.get("dropout", 0.5), efficiency)
    init_classifier(model.fc, cfg.get("fc_init_std"))
    return model

