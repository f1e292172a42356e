"""Input-axis dynamic inference: frames one at a time (online temporal shift), the running average of the
frame predictions is checked after each checkpoint frame, and the video stops when it is confident."""
import torch
from torch import nn

from vidbench.exits import ExitModel
from vidbench.hooks import install_shift, stream_shifts
from vidbench.model import make_backbone


class FrameExits(ExitModel):
    """With a causal shift, frame t's features depend on frames <= t only, so computing all frames in one
    batch gives exactly what a frame-by-frame pass gives; the checkpoint after n frames sees the mean of
    the first n frame logits. Cost of stopping after n frames = n x the per-frame cost (T-th of dense)."""

    def __init__(self, backbone, num_classes, num_segments, checkpoints, dropout, shift_div, **kwargs):
        super().__init__(num_segments, **kwargs)
        frames = sorted({int(n) for n in (checkpoints or range(1, num_segments + 1))} | {num_segments})
        if frames[0] < 1 or frames[-1] > num_segments:
            raise ValueError(f"checkpoints are frame counts in [1, {num_segments}], got {checkpoints}")
        self.frames = frames
        self.backbone = backbone
        install_shift(backbone, num_segments, shift_div, online=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.out_features, num_classes)

    def checkpoint_names(self):
        return [f"{n} frames" for n in self.frames]

    def exit_costs(self):
        per_frame = self.costs.get("", 0.0) / self.num_segments
        return torch.tensor([n * per_frame for n in self.frames], dtype=torch.float64)

    def begin(self, clips):
        return clips, 0.0, None                   # the clips, the sum of the frame logits so far, videos kept

    def advance(self, e, state):
        clips, total, kept = state
        start, stop = self.frames[e - 1] if e else 0, self.frames[e]
        stream_shifts(self.backbone, stop - start, kept)    # the shifts carry frame start-1 into this chunk
        frames = self.backbone(clips[:, start:stop].flatten(0, 1))
        total = total + self.fc(self.dropout(frames)).view(len(clips), stop - start, -1).sum(1)
        return (clips, total, None), total / stop

    def keep(self, state, videos):
        clips, total, _ = state
        return clips[videos], total[videos], videos

    def end(self):
        stream_shifts(self.backbone, None)

    def exit_logits(self, clips):
        batch, frames = clips.shape[:2]
        logits = self.fc(self.dropout(self.backbone(clips.flatten(0, 1)))).view(batch, frames, -1)
        seen = torch.arange(1, frames + 1, device=logits.device, dtype=logits.dtype)
        running = logits.cumsum(1) / seen[None, :, None]                # mean of the first t+1 frames
        return running[:, [n - 1 for n in self.frames]]


def build(cfg, *, backbone, num_classes, num_segments):
    return FrameExits(make_backbone(backbone, cfg), num_classes, num_segments, cfg["checkpoints"], cfg["dropout"],
                      cfg["shift_div"], threshold=cfg["threshold"], sweep=cfg["sweep"],
                      force_exit=cfg.get("force_exit"))
