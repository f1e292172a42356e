"""Feature pooling: the minimal example method. Average frame features over time, then classify."""
from vidbench.model import VideoModel, VideoOutput, make_backbone

from .head import PooledHead


class FeaturePooling(VideoModel):
    def __init__(self, backbone, num_classes, num_segments, dropout):
        super().__init__(num_segments)
        self.backbone = backbone
        self.head = PooledHead(backbone.out_features, num_classes, dropout)

    def forward(self, clips):
        batch, frames = clips.shape[:2]
        features = self.backbone(clips.flatten(0, 1)).view(batch, frames, -1)
        # A static model spends the same on every video; a dynamic one would sum what each video ran,
        # building on the per-module costs in self.costs (see methods/adafuse).
        return VideoOutput(logits=self.head(features), flops=self.static_flops(batch))


def build(cfg, *, backbone, num_classes, num_segments):
    return FeaturePooling(make_backbone(backbone, cfg), num_classes, num_segments, cfg["dropout"])
