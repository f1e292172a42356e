"""Threshold: per frame, keep the top fraction of conv1's output channels by mean |activation|; skip the rest."""
import torch

from vidbench.model import init_classifier, make_backbone
from vidbench.policy import KEEP, SKIP, PolicyClassifier, PolicyHook, install_policies, one_hot


class TopChannels(PolicyHook):
    needs_output = True  # the ranking reads every channel of conv1: only conv2's savings can be realized

    def __init__(self, num_segments, keep_ratio):
        super().__init__(num_segments)
        if not 0 < keep_ratio <= 1:
            raise ValueError(f"keep_ratio must be in (0, 1], not {keep_ratio}")
        self.keep_ratio = keep_ratio

    def decide(self, out, branch):
        score = out.detach().abs().mean((2, 3))                      # [N*T, C]
        # int() as released: the count rounds down (channels: set by install_policies)
        keep = max(1, int(self.keep_ratio * self.channels))
        index = torch.full_like(score, SKIP, dtype=torch.long)
        index.scatter_(1, score.topk(keep, 1).indices, KEEP)
        return one_hot(index, out.dtype)


class ThresholdClassifier(PolicyClassifier):
    def __init__(self, *args, charge_ranking=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.charge_ranking = charge_ranking

    def saved_flops(self, hooks, conv1_savings=True):
        # charge_ranking: conv1 is computed densely to rank its channels, only conv2's input savings count
        return super().saved_flops(hooks, conv1_savings and not self.charge_ranking)


def build(cfg, *, backbone, num_classes, num_segments):
    model = ThresholdClassifier(make_backbone(backbone, cfg), num_classes, num_segments, cfg["dropout"],
                                charge_ranking=cfg.get("charge_ranking", False))
    install_policies(model, lambda name, block: TopChannels(num_segments, cfg["keep_ratio"]), cfg["stages"])
    init_classifier(model.fc, cfg.get("fc_init_std"))
    return model
