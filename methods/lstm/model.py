"""LSTM: per-frame backbone features -> dropout -> LSTMCell(features, hidden) -> classifier at every step, averaged."""
import torch
from torch import nn

from vidbench.model import VideoModel, VideoOutput, init_classifier, make_backbone


class LSTMClassifier(VideoModel):
    def __init__(self, backbone, num_classes, num_segments, hidden, dropout):
        super().__init__(num_segments)
        self.backbone = backbone
        self.lstm = nn.LSTMCell(backbone.out_features, hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    def extra_flops(self):
        # Per step, 4 gates, each an input and a hidden matrix product. Depending on the torch version the
        # trace hides the cell from fvcore (nn.LSTM counts as 0), so count it here and add what fvcore missed.
        cell = self.lstm
        macs = self.num_segments * 4 * cell.hidden_size * (cell.input_size + cell.hidden_size)
        return macs - self.cost("lstm")

    def forward(self, clips):
        batch, frames = clips.shape[:2]
        # as released: dropout on the frame features (where the backbone's fc was), before the cell
        features = self.dropout(self.backbone(clips.flatten(0, 1))).view(batch, frames, -1)
        h = features.new_zeros(batch, self.lstm.hidden_size)
        c = torch.zeros_like(h)
        step_logits = []
        for t in range(frames):
            h, c = self.lstm(features[:, t], (h, c))
            step_logits.append(self.fc(h))
        return VideoOutput(torch.stack(step_logits, 1).mean(1), self.static_flops(batch))


def build(cfg, *, backbone, num_classes, num_segments):
    model = LSTMClassifier(make_backbone(backbone, cfg), num_classes, num_segments, cfg["hidden"], cfg["dropout"])
    init_classifier(model.fc, cfg.get("fc_init_std"))
    return model
