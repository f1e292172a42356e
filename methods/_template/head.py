"""A helper module of the example method: a method directory may hold several modules beside model.py.

model.py imports it relatively (`from .head import PooledHead`); other code can reach it by its stable
package name, `vidbench_methods.<method directory>.head`.
"""
import torch
from torch import nn


class PooledHead(nn.Module):
    """Frame features [B, T, F] -> video logits [B, K]: average over time, dropout, one linear layer."""

    def __init__(self, features: int, num_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features.mean(1)))
