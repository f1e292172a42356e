"""TSN: a 2D CNN on each of T sampled frames, frame logits averaged."""
from vidbench.model import FrameClassifier, init_classifier, make_backbone


def build(cfg, *, backbone, num_classes, num_segments):
    model = FrameClassifier(make_backbone(backbone, cfg), num_classes, num_segments, cfg["dropout"])
    init_classifier(model.fc, cfg.get("fc_init_std"))
    return model
