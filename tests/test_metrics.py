"""Top-1 and Top-5 on hand-made logits: every table's accuracy comes from `vidbench.metrics.accuracy`."""
import pytest
import torch

from vidbench.metrics import accuracy

# 4 videos, 7 classes; each row's classes ranked by hand (best first) in the comment
LOGITS = torch.tensor([
    [0.1, 9.0, 0.2, 0.3, 0.4, 0.5, 0.6],    # 1 6 5 4 3 2 0
    [5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 6.0],    # 6 0 1 2 3 4 5
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],    # 6 5 4 3 2 1 0
    [3.0, 2.0, 7.0, 1.0, 0.0, 8.0, 4.0],    # 5 2 6 0 1 3 4
])


@pytest.mark.parametrize("labels, top1, top5", [
    ([1, 6, 6, 5], 100.0, 100.0),           # every label ranked first
    ([6, 0, 5, 2], 0.0, 100.0),             # every label ranked second
    ([0, 5, 0, 4], 0.0, 0.0),               # every label ranked last
    ([1, 5, 2, 3], 25.0, 50.0),             # first, last, fifth, sixth
    ([3, 3, 2, 3], 0.0, 75.0),              # fifth, fifth, fifth, sixth
])
def test_accuracy_on_hand_ranked_logits(labels, top1, top5):
    assert accuracy(LOGITS, torch.tensor(labels)) == (pytest.approx(top1), pytest.approx(top5))


def test_top5_with_fewer_than_five_classes_counts_every_video():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 1.0, 2.0]])
    assert accuracy(logits, torch.tensor([1, 1])) == (pytest.approx(50.0), pytest.approx(100.0))


def test_accuracy_is_a_percentage_of_videos():
    logits = torch.eye(10)[:3]                      # 3 videos predicting classes 0, 1, 2
    assert accuracy(logits, torch.tensor([0, 1, 9]))[0] == pytest.approx(200 / 3)
