"""TSM: TSN whose residual branches see 1/8 of their channels from frame t-1 and 1/8 from frame t+1."""
from vidbench.hooks import install_shift
from vidbench.model import FrameClassifier, init_classifier, make_backbone


def build(cfg, *, backbone, num_classes, num_segments):
    net = make_backbone(backbone, cfg)
    install_shift(net, num_segments, cfg["shift_div"])
    model = FrameClassifier(net, num_classes, num_segments, cfg["dropout"])
    init_classifier(model.fc, cfg.get("fc_init_std"))
    return model
