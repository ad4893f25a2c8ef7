"""Models as ML engineers write them, for the bring-your-own-model tests: imported by name
(`own_models:LeNet`) or by file (`tests/own_models.py:GrayCNN`), never built into reelrt."""
from __future__ import annotations

import torch
from torch import nn


class LeNet(nn.Module):
    """The classic 32x32x3 LeNet-5."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                                      nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 32), nn.ReLU(), nn.Linear(32, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class GrayCNN(nn.Module):
    """An MNIST-style CNN on 1x28x28 grayscale digits."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.relu(self.conv2(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Volume(nn.Module):
    """Not a classifier: returns a feature map, which the exporter must refuse."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x)


class SentimentLSTM(nn.Module):
    """The classic sentiment model: Embedding -> LSTM(batch_first) -> Linear(hidden, 1), trained
    with BCEWithLogitsLoss; the head reads the last layer's final hidden state."""

    def __init__(self, vocab_size: int = 50, embed_dim: int = 16, hidden: int = 24):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, ids):
        _, (h, _) = self.lstm(self.embedding(ids))
        return self.fc(self.dropout(h[-1]))


class TopicGRU(nn.Module):
    """Two-layer bidirectional GRU, sequence-first, softmax over topics."""

    def __init__(self, vocab_size: int = 60, classes: int = 3):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, 12)
        self.gru = nn.GRU(12, 10, num_layers=2, bidirectional=True)
        self.out = nn.Linear(20, classes)

    def forward(self, ids):                      # ids: (sequence, batch)
        _, h = self.gru(self.emb(ids))
        return self.out(torch.cat([h[-2], h[-1]], dim=1))


class SquashedLSTM(SentimentLSTM):
    """Applies the sigmoid inside forward: the bundle's head must do that, so export refuses."""

    def forward(self, ids):
        return torch.sigmoid(super().forward(ids))


class NormedLSTM(SentimentLSTM):
    """A LayerNorm between the LSTM and the head: outside the exported shape."""

    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(24)

    def forward(self, ids):
        _, (h, _) = self.lstm(self.embedding(ids))
        return self.fc(self.norm(h[-1]))


def spread_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights with realistic spread (some random inits give near-constant logits),
    and BatchNorm statistics that folding must really handle."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 1.0 / m.in_features ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()
