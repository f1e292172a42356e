"""Feature pooling: the minimal example method. Average frame features over time, then classify."""
from torch import nn

from vidbench.model import VideoModel, VideoOutput, make_backbone


class FeaturePooling(VideoModel):
    def __init__(self, backbone, num_classes, num_segments, dropout):
        super().__init__(num_segments)
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.out_features, num_classes)

    def forward(self, clips):
        batch, frames = clips.shape[:2]
        features = self.backbone(clips.flatten(0, 1)).view(batch, frames, -1).mean(1)
        # A static model spends the same on every video; a dynamic one would sum what each video ran,
        # building on the per-module costs in self.costs (see methods/adafuse).
        return VideoOutput(logits=self.fc(self.dropout(features)), flops=self.static_flops(batch))


def build(cfg, *, backbone, num_classes, num_segments):
    return FeaturePooling(make_backbone(backbone, cfg), num_classes, num_segments, cfg["dropout"])
