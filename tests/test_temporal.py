"""Where the published models look across time: AdaFuse's policy net sees frame t-1 beside frame t (and no
other frame), and the LSTM baseline classifies from every step, not from one."""
import torch

from vidbench.flops import attach
from vidbench.plugins import get_method

T, SIZE, CLASSES = 4, 32, 5


def build(method, **overrides):
    torch.manual_seed(0)
    spec = get_method(method)
    model = spec.build({**spec.point_config("default"), **overrides}, backbone="resnet_tiny", num_classes=CLASSES,
                       num_segments=T)
    return attach(model, (T, 3, SIZE, SIZE)).eval()


def first_block_actions(model, clips):
    """Actions [B, T, C] of the first block's policy: its input, the stem's output, is per frame."""
    with torch.no_grad():
        model(clips)
    return model.backbone.layer1[0].policy.actions.argmax(-1)


def test_policy_of_frame_t_sees_frame_t_minus_1_and_no_other_frame():
    model = build("adafuse", init_std=1.0)   # decisions that follow the input
    clips = torch.randn(3, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    changed = clips.clone()
    # the policy pools each frame, and pooled noise looks alike: change frame 1's colour
    changed[:, 1] += torch.tensor([6.0, -6.0, 0.0]).view(1, 3, 1, 1)
    before, after = first_block_actions(model, clips), first_block_actions(model, changed)
    assert not torch.equal(after[:, 2], before[:, 2])     # frame 2's decisions depend on frame 1
    assert torch.equal(after[:, 0], before[:, 0])         # frame 0 does not see frame 1 (no look-ahead)
    assert torch.equal(after[:, 3], before[:, 3])         # frame 3 sees frame 2, not frame 1


def test_lstm_averages_the_classifier_over_every_step():
    model = build("lstm")
    clips = torch.randn(2, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(clips).logits
        features = model.backbone(clips.flatten(0, 1)).view(2, T, -1)
        h = c = torch.zeros(2, model.lstm.hidden_size)
        steps = []
        for t in range(T):
            h, c = model.lstm(features[:, t], (h, c))
            steps.append(model.fc(h))
    assert torch.allclose(logits, torch.stack(steps, 1).mean(1), atol=1e-6)
    assert not torch.allclose(logits, steps[-1], atol=1e-3)   # not the last step alone
