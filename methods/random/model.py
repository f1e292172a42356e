"""Random: temporal fusion (keep / reuse / skip per channel and frame) with a random policy whose
distribution is matched to the FLOPs of the AdaFuse run it requires."""
import itertools
import json
import math
import sys
from pathlib import Path

import torch

from vidbench.errors import InputError
from vidbench.model import init_classifier, make_backbone
from vidbench.policy import PolicyClassifier, PolicyHook, install_policies, one_hot


def expected_flops(distribution, dense, blocks, num_segments):
    """Expected Eq. 5 cost of a video when every channel and frame draws i.i.d. from [skip, reuse, keep].

    blocks: [(conv1 MACs, conv2 MACs)] of each hooked block over one video. A channel's conv1 output at
    frame t < T-1 is computed unless it is neither kept at t nor reused at t+1; at t = T-1 iff kept."""
    skip, reuse, keep = distribution
    late = (num_segments - 1) / num_segments
    computed = late * (1 - (1 - keep) * (1 - reuse)) + keep / num_segments
    return dense - sum(m1 * (1 - computed) + m2 * skip for m1, m2 in blocks)


def match_distribution(target, dense, blocks, num_segments, ratio):
    """[skip, reuse, keep] with skip:reuse = ratio whose expected Eq. 5 cost equals `target` MACs.

    With skip = l*a, reuse = l*b, keep = 1 - l*(a+b) (a + b = 1), the expected cost is the quadratic
    dense - l*(M1 + a*M2) + l^2 * (T-1)/T * b * M1 (M1, M2: conv1, conv2 MACs of the hooked blocks);
    the smallest root in [0, 1] is taken. Out of reach (target above dense or below the cheapest
    distribution with that ratio): the closest reachable cost. Returns (distribution, reached)."""
    a, b = (float(v) for v in ratio)
    if a < 0 or b < 0:
        raise ValueError(f"skip:reuse ratio must be non-negative, got {ratio}")
    a, b = (a / (a + b), b / (a + b)) if a + b > 0 else (0.5, 0.5)
    m1 = sum(m for m, _ in blocks)
    m2 = sum(m for _, m in blocks)
    quad, lin, const = (num_segments - 1) / num_segments * b * m1, -(m1 + a * m2), dense - target

    def dist(scale):
        return (scale * a, scale * b, 1 - scale)

    roots = []
    if quad > 0:
        disc = lin * lin - 4 * quad * const
        if disc >= 0:
            roots = [(-lin - math.sqrt(disc)) / (2 * quad), (-lin + math.sqrt(disc)) / (2 * quad)]
    elif lin != 0:
        roots = [-const / lin]
    inside = [r for r in roots if -1e-12 <= r <= 1 + 1e-12]
    if inside:
        return dist(min(max(min(inside), 0.0), 1.0)), True
    candidates = [0.0, 1.0] + ([min(max(-lin / (2 * quad), 0.0), 1.0)] if quad > 0 else [])
    best = min(candidates, key=lambda s: abs(expected_flops(dist(s), dense, blocks, num_segments) - target))
    return dist(best), False


def read_adafuse(path):
    """(GFLOPs, [skip, reuse]) of an AdaFuse run's metrics.json."""
    path = Path(path)
    try:
        metrics = json.loads(path.read_text())
        stats = metrics["stats"]
        return float(metrics["gflops"]), (float(stats["skip"]), float(stats["reuse"]))
    except OSError as err:
        raise InputError(path, f"cannot read the AdaFuse run's metrics: {err.strerror}",
                         expected="metrics.json of the adafuse run (evaluate it first)") from err
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(path, f"AdaFuse metrics lack a field: {err}",
                         expected='"gflops" and "stats": {"skip", "reuse", ...}') from err


class RandomPolicy(PolicyHook):
    """Draws every channel's action at every frame from `probs` [skip, reuse, keep]. In eval mode the
    draws come from a private generator reseeded with `seed` on every switch to eval mode."""

    def __init__(self, num_segments, seed):
        super().__init__(num_segments)
        self.register_buffer("probs", torch.tensor([0.0, 0.0, 1.0]))
        self.seed = seed
        self.generator = None

    def train(self, mode=True):
        if not mode:
            self.generator = None
        return super().train(mode)

    def decide(self, out, branch):
        generator = None
        if not self.training:
            if self.generator is None or self.generator.device != branch.device:
                self.generator = torch.Generator(branch.device).manual_seed(self.seed)
            generator = self.generator
        u = torch.rand((branch.shape[0], self.channels), device=branch.device, generator=generator)
        cdf = self.probs.cumsum(0)
        index = (u[..., None] >= cdf[:2]).sum(-1)                   # 0 skip, 1 reuse, 2 keep
        return one_hot(index, branch.dtype)


class RandomClassifier(PolicyClassifier):
    """`target`: (AdaFuse GFLOPs, skip:reuse ratio) to match. The cost table exists only once the model is
    attached (`vidbench.flops.attach`), so the distribution is solved at the first forward after that and
    flagged in the `matched` buffer: a checkpoint carries the distribution it was trained with."""

    def __init__(self, *args, target=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.target = target
        self.register_buffer("matched", torch.tensor(False))

    def set_distribution(self, distribution):
        probs = torch.tensor([float(p) for p in distribution])
        if probs.shape != (3,) or (probs < 0).any() or abs(probs.sum().item() - 1) > 1e-6:
            raise ValueError(f"distribution must be [skip, reuse, keep] summing to 1, got {distribution}")
        for hook in self.hooks():
            hook.probs.copy_(probs)
        self.matched.fill_(True)

    def distribution(self):
        return self.hooks()[0].probs.tolist()

    def match_target(self):
        gflops, ratio = self.target
        blocks = [(self.cost(h.conv1_name), self.cost(h.conv2_name)) for h in self.hooks()]
        distribution, reached = match_distribution(gflops * 1e9, self.dense_flops, blocks, self.num_segments, ratio)
        if not reached:
            print(f"random: AdaFuse's {gflops:.4f} GFLOPs is out of reach with skip:reuse = {ratio}; "
                  f"using the closest distribution {distribution}", file=sys.stderr)
        self.set_distribution(distribution)

    def forward(self, clips):
        if self.costs and not self.matched:
            self.match_target()
        return super().forward(clips)

    def summarize(self, stats):
        return {**super().summarize(stats), "distribution": self.distribution()}


def build(cfg, *, backbone, num_classes, num_segments):
    fixed = cfg.get("distribution")
    path = (cfg.get("requires") or {}).get("adafuse")
    if fixed is None and not path:
        raise InputError("methods/random/method.yaml", "no distribution and no AdaFuse run to match",
                         expected="model cfg `requires: {adafuse: <metrics.json>}` or `distribution: [skip, reuse, keep]`")
    model = RandomClassifier(make_backbone(backbone, cfg), num_classes, num_segments, cfg["dropout"],
                             target=None if fixed is not None else read_adafuse(path))
    seeds = itertools.count(int(cfg.get("eval_seed", 0)) * 1000)   # one generator seed per block
    install_policies(model, lambda name, block: RandomPolicy(num_segments, next(seeds)),
                     cfg["stages"])
    if fixed is not None:
        model.set_distribution(fixed)
    init_classifier(model.fc, cfg.get("fc_init_std"))
    return model
