"""CGNet: channel gating of conv1 in every residual block of a TSN (the gate: gate.py beside this file)."""
import torch

from vidbench.model import FrameClassifier, VideoOutput, init_classifier, make_backbone

from .gate import gated_savings, install_gates, theta_loss


class GatedClassifier(FrameClassifier):
    def __init__(self, backbone, num_classes, num_segments, dropout, groups, alpha, theta_weight, theta_target,
                 force=None):
        super().__init__(backbone, num_classes, num_segments, dropout)
        self.gates = install_gates(backbone, groups, alpha, force)
        self.theta_weight, self.theta_target = theta_weight, theta_target

    def forward(self, clips):
        batch = clips.shape[0]
        logits = self.fc(self.dropout(self.frame_features(clips))).mean(1)
        flops = self.static_flops(batch).to(logits.device) - gated_savings(self.gates, self.costs, self.num_segments)
        losses = {"theta": theta_loss(self.gates, self.theta_weight, self.theta_target)} if self.training else {}
        per_block = torch.stack([gate.open.view(batch, -1).mean(1) for _, gate in self.gates], 1)
        return VideoOutput(logits, flops, losses, {"gate_open": per_block.mean(1), "gate_open_per_block": per_block})


def build(cfg, *, backbone, num_classes, num_segments):
    model = GatedClassifier(make_backbone(backbone, cfg), num_classes, num_segments, cfg["dropout"], cfg["groups"],
                            cfg["alpha"], cfg["theta_weight"], cfg["theta_target"], cfg.get("force"))
    init_classifier(model.fc, cfg.get("fc_init_std"))
    return model
