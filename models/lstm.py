"""The LSTM text classifier (Embedding -> LSTM -> Linear), its tokenizer and its checkpoint.

Padding never changes an answer: a bidirectional LSTM runs packed sequences (each text for
its own length), a forward one reads its output at each text's last token. The export
(export/lstm.py) keeps this with the ONNX LSTM op's `sequence_lens`.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from reelrt.models.checkpoints import read_checkpoint
from reelrt.runtime.errors import InputError

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID = 0                       # the tokenizer's first special token, and the embedding's padding row
DEFAULT_MAX_LENGTH = 128
FORTUNES_CSV = Path(__file__).with_name("data") / "fortunes.csv"
CHECKPOINT_FORMAT = "reelrt-lstm-1"
# what to do with a file that is not such a checkpoint, e.g. the state_dict of the user's own module
_OWN_MODULE = ("for your own model's state_dict, pass its class with --module pkg.mod:Class (or file.py:Class)"
               " and its --tokenizer")


@dataclass
class LSTMConfig:
    vocab_size: int
    num_classes: int
    embed_dim: int = 128
    hidden: int = 128
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.2         # training only: between layers and before the head

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1


class LSTMClassifier(nn.Module):
    """Token ids (batch, sequence) and their lengths (batch,) -> class logits (batch, classes).

    The features for the head are the final hidden states of the last layer: forward
    direction after each text's last token, backward direction after its first.
    """

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(config.embed_dim, config.hidden, num_layers=config.layers, batch_first=True,
                            bidirectional=config.bidirectional, dropout=config.dropout if config.layers > 1 else 0.0)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden * config.directions, config.num_classes)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None, packed: bool = False) -> torch.Tensor:
        """Without `lengths` every row is taken to fill the whole sequence axis. packed=True
        runs packed sequences in every case (the reference exports are checked against)."""
        x = self.dropout(self.embedding(input_ids))
        if lengths is not None and not self.config.bidirectional and not packed:
            # A forward LSTM's output at a text's last token has not seen the padding after it,
            # so no packing is needed (PyTorch's packed LSTM is several times slower on CPU).
            outputs, _ = self.lstm(x)
            features = outputs[torch.arange(len(lengths)), lengths.to(outputs.device) - 1]
        else:
            if lengths is not None:
                x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, (h_n, _) = self.lstm(x)
            last = h_n[-self.config.directions:]                     # (directions, batch, hidden)
            features = last.transpose(0, 1).reshape(last.shape[1], -1)  # forward then backward, per row
        return self.head(self.dropout(features))


def train_tokenizer(texts: list[str], vocab_size: int, min_frequency: int = 1) -> Tokenizer:
    """A lower-casing word-level tokenizer; [PAD] gets id 0 and [UNK] id 1.

    The vocabulary is the words seen at least min_frequency times, most frequent first and
    ties in alphabetical order, cut to vocab_size: the same texts always give the same ids
    (a trained subword vocabulary breaks ties between equal counts differently from run to run).
    """
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for text in texts
                     for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(text)))
    words = sorted((w for w, n in counts.items() if n >= min_frequency), key=lambda w: (-counts[w], w))
    vocab = {token: i for i, token in enumerate([PAD, UNK, *words[:max(0, vocab_size - 2)]])}
    tokenizer.model = models.WordLevel(vocab, unk_token=UNK)
    return tokenizer


def read_labeled_csv(path: str | Path) -> tuple[list[str], list[str]]:
    """The (text, label) rows of a CSV with a header naming `text` and `label` columns.

    Rows whose text is empty are skipped; anything else malformed raises InputError.
    """
    texts, labels = [], []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
                raise InputError(f"{path}: the header must name the columns text and label, got {reader.fieldnames}")
            for row in reader:
                text, label = row["text"], row["label"]
                if text is None or label is None or not label.strip():
                    raise InputError(f"{path}, line {reader.line_num}: a row needs both text and label")
                if text.strip():
                    texts.append(text)
                    labels.append(label.strip())
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text: {e}") from None
    if len(set(labels)) < 2:
        raise InputError(f"{path}: need at least two labels to classify, found {sorted(set(labels))}")
    return texts, labels


@dataclass
class Checkpoint:
    """What `reelrt train lstm` writes and `reelrt export lstm --checkpoint` reads."""
    model: LSTMClassifier
    tokenizer: Tokenizer
    labels: list[str]
    max_length: int = DEFAULT_MAX_LENGTH
    metrics: dict = field(default_factory=dict)
    heldout: list[tuple[str, str]] = field(default_factory=list)  # (text, label) rows never trained on

    def save(self, path: str | Path) -> None:
        torch.save({"format": CHECKPOINT_FORMAT, "config": asdict(self.model.config),
                    "state_dict": self.model.state_dict(), "tokenizer": self.tokenizer.to_str(),
                    "labels": self.labels, "max_length": self.max_length, "metrics": self.metrics,
                    "heldout": [list(row) for row in self.heldout]}, path)

    @classmethod
    def load(cls, path: str | Path) -> "Checkpoint":
        doc = read_checkpoint(path, "checkpoint", f"give one written by `reelrt train lstm`; {_OWN_MODULE}")
        if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{path} is not an LSTM checkpoint written by `reelrt train lstm`"
                             f"{' but a state_dict' if _is_state_dict(doc) else ''}; {_OWN_MODULE}")
        try:
            model = LSTMClassifier(LSTMConfig(**doc["config"]))
            model.load_state_dict(doc["state_dict"])
            return cls(model.eval(), Tokenizer.from_str(doc["tokenizer"]), list(doc["labels"]), int(doc["max_length"]),
                       dict(doc["metrics"]), [tuple(row) for row in doc["heldout"]])
        except Exception as e:  # missing keys, wrong shapes; tokenizers raises a bare Exception
            raise InputError(f"{path}: damaged LSTM checkpoint ({type(e).__name__}: {e})") from None


def random_checkpoint(vocab_size: int, hidden: int, embed_dim: int = 128, layers: int = 1,
                      bidirectional: bool = False, seed: int = 0) -> Checkpoint:
    """Random weights over the fortunes labels, with a tokenizer trained on the fortunes texts
    (capped at `vocab_size`): a real architecture for latency and parity, not for accuracy."""
    texts, labels = read_labeled_csv(FORTUNES_CSV)
    torch.manual_seed(seed)
    label_names = sorted(set(labels))
    config = LSTMConfig(vocab_size, len(label_names), embed_dim, hidden, layers, bidirectional)
    return Checkpoint(LSTMClassifier(config).eval(), train_tokenizer(texts, vocab_size), label_names)


def _is_state_dict(doc) -> bool:
    return isinstance(doc, dict) and bool(doc) and all(isinstance(v, torch.Tensor) for v in doc.values())
