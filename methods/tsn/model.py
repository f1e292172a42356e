"""TSN: a 2D CNN on each of T sampled frames, frame logits averaged."""
from vidbench.model import FrameClassifier, make_backbone


def build(cfg, *, backbone, num_classes, num_segments):
    return FrameClassifier(make_backbone(backbone, cfg), num_classes, num_segments, cfg["dropout"])
