"""How often an action classifier names the right label: per-video predictions over a data set, accuracy per label
and the confusion matrix.

    report = classify_dataset(classifier, SynthFaceDataset("test")).accuracy_report()
    print(report.table())
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from lfdm.evaluation.classifier import ActionClassifier


@dataclass
class AccuracyReport:
    """Accuracy over N videos, per label, and the confusion matrix (rows: true label, columns: predicted)."""

    accuracy: float
    per_label: dict[str, float]
    confusion: list[list[int]]
    labels: list[str]
    count: int

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "per_label": self.per_label,
            "confusion": self.confusion,
            "labels": self.labels,
            "count": self.count,
        }

    def table(self) -> str:
        """The confusion matrix as plain text."""
        width = max(len(label) for label in self.labels) + 2
        lines = [" " * width + "".join(f"{label[:7]:>8}" for label in self.labels)]
        for label, row in zip(self.labels, self.confusion, strict=True):
            lines.append(f"{label:<{width}}" + "".join(f"{count:>8}" for count in row))
        return "\n".join(lines)


def accuracy_report(predictions: torch.Tensor, targets: torch.Tensor, labels: list[str]) -> AccuracyReport:
    """predictions, targets: int (N,) indices into `labels`."""
    predictions, targets = predictions.long().cpu(), targets.long().cpu()
    confusion = torch.zeros(len(labels), len(labels), dtype=torch.int64)
    confusion.index_put_((targets, predictions), torch.ones_like(targets), accumulate=True)
    counts = confusion.tolist()
    per_label = {label: counts[i][i] / sum(counts[i]) for i, label in enumerate(labels) if sum(counts[i]) > 0}
    correct = sum(counts[i][i] for i in range(len(labels)))
    accuracy = correct / len(targets) if len(targets) else float("nan")
    return AccuracyReport(accuracy, per_label, counts, list(labels), len(targets))


@dataclass
class ClassifiedVideos:
    """The classifier's view of N videos: logits (N, L), features (N, D), true label indices (N,)."""

    logits: torch.Tensor
    features: torch.Tensor
    targets: torch.Tensor
    labels: list[str]

    def accuracy_report(self) -> AccuracyReport:
        return accuracy_report(self.logits.argmax(dim=1), self.targets, self.labels)


@torch.no_grad()
def classify_dataset(
    classifier: ActionClassifier, dataset: Dataset, *, batch_size: int = 32, max_videos: int | None = None
) -> ClassifiedVideos:
    """Classify the clip-view items of a data set (labels looked up by name in the classifier's labels)."""
    count = len(dataset) if max_videos is None else min(max_videos, len(dataset))
    logits, features, targets, batch = [], [], [], []

    def flush() -> None:
        out = classifier.predict(torch.stack(batch), batch_size=batch_size)
        logits.append(out.logits)
        features.append(out.features)
        batch.clear()

    for index in range(count):
        item = dataset[index]
        if item["label"] not in classifier.labels:
            raise ValueError(f"label {item['label']!r} is not one of the classifier's labels {classifier.labels}.")
        targets.append(classifier.labels.index(item["label"]))
        batch.append(item["video"])
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not targets:
        raise ValueError("no videos to classify; check the data set.")
    return ClassifiedVideos(torch.cat(logits), torch.cat(features), torch.tensor(targets), classifier.labels)
