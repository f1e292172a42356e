"""Dynamic early exit on a compact MSDNet (multi-scale dense network) with online temporal shift."""
import torch

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

    def exit_logits(self, clips):
        batch, frames = clips.shape[:2]
        return torch.stack([z.view(batch, frames, -1).mean(1) for z in self.net(clips.flatten(0, 1))], 1)


def build(cfg, *, backbone, num_classes, num_segments):
    # `msdnet: {<backbone>: {...}}` reaches build() already resolved to this backbone's overrides
    size = msdnet_size(backbone, cfg.get("msdnet") or None)
    net = MSDNet(num_classes, num_segments, dropout=cfg["dropout"], shift_div=cfg["shift_div"], **size)
    return MSDNetExits(net, num_segments, threshold=cfg["threshold"], sweep=cfg["sweep"],
                       force_exit=cfg.get("force_exit"))
