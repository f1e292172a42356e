"""Dynamic early exit on a compact MSDNet (multi-scale dense network) with online temporal shift."""
from vidbench.exits import ExitModel

from .msdnet import MSDNet, msdnet_size


class MSDNetExits(ExitModel):
    def __init__(self, net, num_segments, **kwargs):
        super().__init__(num_segments, **kwargs)
        self.net = net

    def checkpoint_names(self):
        return [f"block{e + 1}" for e in range(len(self.net.heads))]

    def segments(self):
        return [[f"net.blocks.{e}", f"net.heads.{e}"] for e in range(len(self.net.heads))]

    def begin(self, clips):
        return clips.flatten(0, 1)

    def advance(self, e, xs):
        xs = self.net.blocks[e](xs)
        head = self.net.heads[e]
        return xs, head(xs[-1]).view(-1, self.num_segments, head.fc.out_features).mean(1)


def build(cfg, *, backbone, num_classes, num_segments):
    # `msdnet: {<backbone>: {...}}` reaches build() already resolved to this backbone's overrides
    size = msdnet_size(backbone, cfg.get("msdnet") or None)
    net = MSDNet(num_classes, num_segments, dropout=cfg["dropout"], shift_div=cfg["shift_div"], **size)
    return MSDNetExits(net, num_segments, threshold=cfg["threshold"], sweep=cfg["sweep"],
                       force_exit=cfg.get("force_exit"))
