"""`reelrt train lstm --csv FILE --out FILE`: train the LSTM classifier on (text, label) rows.

A stratified fifth of the rows is held out before anything is fitted (the tokenizer
included) and used only to report accuracy; the checkpoint keeps those rows so that the
export and the int8 pass can report accuracy on the same texts. Beside it, a TF-IDF +
logistic regression baseline is fitted on the same training rows and scored on the same
held-out rows, so the accuracy can be read against something.

The default recipe reaches that baseline on the fortunes CSV in well under half a minute on
two cores with no pretrained weights: a word-level vocabulary (the words seen twice), a
small bidirectional LSTM, and embeddings whose first dimensions start from each word's
class evidence in the training rows (naive Bayes' log-count ratios, see `seed_embeddings`),
so that training begins from words that already point at labels.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from reelrt.models.lstm import (DEFAULT_MAX_LENGTH, PAD_ID, Checkpoint, LSTMClassifier, LSTMConfig,
                                read_labeled_csv, train_tokenizer)
from reelrt.runtime.errors import InputError
from reelrt.runtime.tasks.text import encode


@dataclass
class TrainSettings:
    epochs: int = 16
    hidden: int = 64
    embed_dim: int = 64
    layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.5
    vocab_size: int = 8000
    min_frequency: int = 2         # words seen fewer times in the training rows are [UNK]
    max_length: int = DEFAULT_MAX_LENGTH
    batch_size: int = 64
    learning_rate: float = 5e-3    # decays linearly to a tenth over the epochs
    class_evidence: float = 4.0    # scale of the class log-count ratios seeding the embeddings (0: off)
    heldout_fraction: float = 0.2
    seed: int = 0


def split(texts: list[str], labels: list[str], fraction: float, seed: int):
    from sklearn.model_selection import train_test_split
    return train_test_split(texts, labels, test_size=fraction, random_state=seed, stratify=labels)


def train(texts: list[str], labels: list[str], settings: TrainSettings, progress: bool = True) -> Checkpoint:
    """Fit tokenizer and classifier on the training rows; report accuracy on the held-out rows."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # a 64-unit LSTM's kernels are tiny: a second thread only adds contention
    try:
        return _train(texts, labels, settings, progress)
    finally:
        torch.set_num_threads(threads)


def _train(texts: list[str], labels: list[str], settings: TrainSettings, progress: bool) -> Checkpoint:
    start = time.monotonic()
    torch.manual_seed(settings.seed)
    train_texts, test_texts, train_labels, test_labels = split(texts, labels, settings.heldout_fraction, settings.seed)
    label_names = sorted(set(labels))
    tokenizer = train_tokenizer(train_texts, settings.vocab_size, settings.min_frequency)
    config = LSTMConfig(tokenizer.get_vocab_size(), len(label_names), settings.embed_dim, settings.hidden,
                        settings.layers, settings.bidirectional, settings.dropout)
    model = LSTMClassifier(config)
    ids, lengths = encode(tokenizer, train_texts, settings.max_length, PAD_ID)
    targets = torch.tensor([label_names.index(label) for label in train_labels])
    if settings.class_evidence:
        seed_embeddings(model, ids, lengths, targets.numpy(), settings.class_evidence)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=1e-4)
    rng = np.random.default_rng(settings.seed)
    # disable=None: a progress bar on a terminal, nothing in a log
    bar = tqdm(range(settings.epochs), desc="train lstm", unit="epoch", disable=None if progress else True)
    for epoch in bar:
        for group in optimizer.param_groups:
            group["lr"] = settings.learning_rate * (1 - 0.9 * epoch / max(1, settings.epochs - 1))
        model.train()
        total = 0.0
        for rows in length_buckets(lengths, settings.batch_size, rng):
            width = int(lengths[rows].max())
            logits = model(torch.from_numpy(ids[rows, :width]), torch.from_numpy(lengths[rows].astype(np.int64)))
            loss = torch.nn.functional.cross_entropy(logits, targets[rows])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total += loss.item() * len(rows)
        bar.set_postfix(loss=f"{total / len(ids):.3f}")
    model.eval()
    heldout = list(zip(test_texts, test_labels))
    metrics = {"heldout_accuracy": round(accuracy(model, tokenizer, heldout, label_names, settings.max_length), 4),
               "train_seconds": round(time.monotonic() - start, 1),
               "tfidf_logreg_accuracy": round(tfidf_logreg_accuracy(train_texts, train_labels, heldout), 4),
               "train_rows": len(train_texts), "heldout_rows": len(heldout), "epochs": settings.epochs,
               "majority_baseline": round(max(test_labels.count(l) for l in label_names) / len(test_labels), 4)}
    return Checkpoint(model, tokenizer, label_names, settings.max_length, metrics, heldout)


def seed_embeddings(model: LSTMClassifier, ids: np.ndarray, lengths: np.ndarray, targets: np.ndarray,
                    scale: float) -> None:
    """Start embedding dimension c of each word at its log-count ratio for class c: how much more
    often the word occurs in training texts of class c than on average over the classes
    (add-one smoothed document counts, naive Bayes' evidence). Learned from the training rows
    alone; the other dimensions keep their random start, and every weight is trained after."""
    vocab, classes = model.config.vocab_size, model.config.num_classes
    dims = min(classes, model.config.embed_dim)
    counts = np.ones((vocab, classes))
    for row, length, target in zip(ids, lengths, targets):
        counts[np.unique(row[:length]), target] += 1
    log_p = np.log(counts / counts.sum(axis=0, keepdims=True))
    ratios = log_p - log_p.mean(axis=1, keepdims=True)
    with torch.no_grad():
        model.embedding.weight[:, :dims] = torch.from_numpy(scale * ratios[:, :dims]).float()
        model.embedding.weight[PAD_ID] = 0.0


def tfidf_logreg_accuracy(train_texts: list[str], train_labels: list[str], heldout: list[tuple[str, str]]) -> float:
    """The bag-of-words baseline: TF-IDF (sublinear term frequency) and logistic regression (C=10)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    vectorizer = TfidfVectorizer(sublinear_tf=True)
    fitted = LogisticRegression(C=10, max_iter=2000).fit(vectorizer.fit_transform(train_texts), train_labels)
    predicted = fitted.predict(vectorizer.transform([text for text, _ in heldout]))
    return float(np.mean([p == label for p, (_, label) in zip(predicted, heldout)]))


def length_buckets(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of texts of similar length, in random order: the packed LSTM then runs
    about as many steps as the texts are long, not as long as the longest text in the set."""
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches = np.array_split(order, max(1, len(order) // batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def accuracy(model: LSTMClassifier, tokenizer, rows: list[tuple[str, str]], labels: list[str], max_length: int) -> float:
    ids, lengths = encode(tokenizer, [text for text, _ in rows], max_length, PAD_ID)
    with torch.no_grad():
        predicted = model(torch.from_numpy(ids), torch.from_numpy(lengths.astype(np.int64))).argmax(-1).tolist()
    return float(np.mean([labels[p] == label for p, (_, label) in zip(predicted, rows)]))


def main(args: argparse.Namespace) -> int:
    texts, labels = read_labeled_csv(args.csv)
    given = {k: v for k, v in vars(args).items() if k in TrainSettings.__dataclass_fields__ and v is not None}
    settings = TrainSettings(**given)
    for name in ("epochs", "hidden", "layers", "vocab_size", "max_length"):
        if getattr(settings, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(settings, name)}")
    checkpoint = train(texts, labels, settings)
    checkpoint.save(args.out)
    m = checkpoint.metrics
    print(f"wrote {args.out}: {len(checkpoint.labels)} labels, held-out accuracy {m['heldout_accuracy']:.2%}"
          f" on {m['heldout_rows']} rows (TF-IDF + logistic regression {m['tfidf_logreg_accuracy']:.2%},"
          f" majority class {m['majority_baseline']:.2%}), trained in {m['train_seconds']:.1f} s")
    return 0
