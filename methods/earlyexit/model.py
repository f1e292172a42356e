"""Dynamic early exit on a ResNet with online temporal shift: checkpoints at the ends of chosen stages."""
from torch import nn

from vidbench.exits import ExitHead, ExitModel, feature_channels
from vidbench.hooks import install_shift
from vidbench.model import make_backbone


class ResNetExits(ExitModel):
    def __init__(self, backbone, num_classes, num_segments, exits, dropout, head_channels, shift_div, **kwargs):
        super().__init__(num_segments, **kwargs)
        exits = sorted(int(s) for s in exits)
        if exits[-1] != len(backbone.stages) or exits[0] < 1:
            raise ValueError(f"exits are 1-based stage numbers ending with the last stage, got {exits}")
        self.backbone, self.exits = backbone, exits
        install_shift(backbone, num_segments, shift_div, online=True)
        heads = []
        for stage in exits:
            channels = feature_channels(backbone.stages[stage - 1])
            last = stage == exits[-1]
            # intermediate checkpoints: a 3x3 stride-2 conv to min(2C, head_channels) first; the last: TSN's fc
            heads.append(ExitHead(channels, num_classes, None if last else min(2 * channels, head_channels),
                                  dropout))
        self.heads = nn.ModuleList(heads)

    def checkpoint_names(self):
        return [f"layer{s}" for s in self.exits]

    def segments(self):
        out, previous = [], 0
        for e, stage in enumerate(self.exits):
            out.append([f"backbone.layer{s}" for s in range(previous + 1, stage + 1)] + [f"heads.{e}"])
            previous = stage
        return out

    def begin(self, clips):
        return self.backbone.stem(clips.flatten(0, 1))

    def advance(self, e, x):
        for stage in self.backbone.stages[self.exits[e - 1] if e else 0:self.exits[e]]:
            x = stage(x)
        return x, self.heads[e](x).view(-1, self.num_segments, self.heads[e].fc.out_features).mean(1)

def build(cfg, *, backbone, num_classes, num_segments):
    return ResNetExits(make_backbone(backbone, cfg), num_classes, num_segments, cfg["exits"], cfg["dropout"],
                       cfg["head_channels"], cfg["shift_div"], threshold=cfg["threshold"], sweep=cfg["sweep"],
                       force_exit=cfg.get("force_exit"))
