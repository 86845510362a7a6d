"""Reconstruction quality of a latent flow autoencoder, against the trivial copy-frame-0 baseline.

Every frame t >= 1 of each test video is reconstructed from frame 0 alone, as the official test script does:
`estimate_flow(frame_0, frame_t)`, then `decode(frame_0, flow, occlusion)`. Frame 0 itself is left out: the
baseline would reproduce it perfectly (infinite PSNR). Scores are means over all evaluated frames, and over each
label's frames when the videos come with labels (which motions the autoencoder misses).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch

from lfdm.data.factory import DataConfig, build_dataset, describe_dataset
from lfdm.metrics import l1_error, psnr, ssim
from lfdm.models import LatentFlowAutoencoder

logger = logging.getLogger(__name__)


@dataclass
class ReconstructionScores:
    """Means over frames: L1 (mean absolute error, [0, 1] images), PSNR (dB), SSIM."""

    l1: float
    psnr: float
    ssim: float


@dataclass
class LabelScores:
    """Both methods' scores on the frames of one label's videos."""

    autoencoder: ReconstructionScores
    copy_frame_0: ReconstructionScores
    num_frames: int


@dataclass
class LFAEEvaluation:
    """The autoencoder's scores and the copy-frame-0 baseline's, over `num_videos` videos / `num_frames` frames;
    `per_label` the same per label, in the order the labels came (empty for unlabelled videos)."""

    autoencoder: ReconstructionScores
    copy_frame_0: ReconstructionScores
    num_videos: int
    num_frames: int
    per_label: dict[str, LabelScores] = field(default_factory=dict)

    def to_dict(self) -> dict:
        record = dataclasses.asdict(self) | {"psnr_gain_db": self.autoencoder.psnr - self.copy_frame_0.psnr}
        for label, scores in self.per_label.items():
            record["per_label"][label]["psnr_gain_db"] = scores.autoencoder.psnr - scores.copy_frame_0.psnr
        return record

    def table(self) -> str:
        """A plain-text table, one row per method, then the PSNR per label if the videos had labels."""
        lines = [f"{'method':<14}{'L1':>10}{'PSNR (dB)':>12}{'SSIM':>10}"]
        for name, scores in (("autoencoder", self.autoencoder), ("copy frame 0", self.copy_frame_0)):
            lines.append(f"{name:<14}{scores.l1:>10.4f}{scores.psnr:>12.2f}{scores.ssim:>10.4f}")
        lines.append(f"{self.num_videos} videos, {self.num_frames} frames reconstructed from frame 0")
        if self.per_label:
            lines.append(f"{'label':<14}{'PSNR (dB)':>10}{'copy (dB)':>12}{'gain':>10}")
            for label, scores in self.per_label.items():
                ours, copy = scores.autoencoder.psnr, scores.copy_frame_0.psnr
                lines.append(f"{label:<14}{ours:>10.2f}{copy:>12.2f}{ours - copy:>+10.2f}")
        return "\n".join(lines)


class _Means:
    def __init__(self) -> None:
        self.sums = {"l1": 0.0, "psnr": 0.0, "ssim": 0.0}
        self.count = 0

    def add(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        self.sums["l1"] += l1_error(prediction, target).sum().item()
        self.sums["psnr"] += psnr(prediction, target).sum().item()
        self.sums["ssim"] += ssim(prediction, target).sum().item()
        self.count += prediction.shape[0]

    def scores(self) -> ReconstructionScores:
        return ReconstructionScores(**{name: total / max(self.count, 1) for name, total in self.sums.items()})


@torch.inference_mode()
def evaluate_reconstruction(
    model: LatentFlowAutoencoder,
    videos: Iterable[torch.Tensor | tuple[torch.Tensor, str]],
    *,
    batch_size: int = 32,
    reconstructions: list[torch.Tensor] | None = None,
) -> LFAEEvaluation:
    """Score `model` on videos, each (3, F, H, W) in [0, 1] with H = W = the model's image_size, or a pair
    (video, label): labelled videos are scored per label too.

    Frames are processed `batch_size` at a time; frame 0 is encoded once per video. Given a list,
    `reconstructions` receives each video as reconstructed, (3, F, H, W) float32 on the CPU in [0, 1], with the
    input's frame 0 as its frame 0 (what the classifier of `python -m lfdm evaluate` scores).
    """
    model.eval()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    autoencoder, baseline = _Means(), _Means()
    per_label: dict[str, tuple[_Means, _Means]] = {}
    num_videos = 0
    for item in videos:
        video, label = item if isinstance(item, tuple) else (item, None)
        means = [(autoencoder, baseline)]
        if label is not None:
            means.append(per_label.setdefault(label, (_Means(), _Means())))
        frames = video.to(device=device, dtype=dtype).transpose(0, 1)  # (3, F, H, W) -> (F, 3, H, W)
        if frames.shape[0] < 2:
            raise ValueError(f"videos need at least 2 frames to reconstruct; got {frames.shape[0]}.")
        reference = frames[:1]
        features = model.encode_pyramid(reference)
        kept = None if reconstructions is None else [reference.float().cpu()]
        for targets in frames[1:].split(batch_size):
            count = targets.shape[0]
            estimate = model.estimate_flow(reference.expand(count, -1, -1, -1), targets)
            prediction = model.decode(reference, estimate.flow, estimate.occlusion, features=features).prediction
            for ours, copy in means:
                ours.add(prediction.float(), targets.float())
                copy.add(reference.expand(count, -1, -1, -1).float(), targets.float())
            if kept is not None:
                kept.append(prediction.float().cpu())
        if kept is not None:
            reconstructions.append(torch.cat(kept).transpose(0, 1))
        num_videos += 1
    if num_videos == 0:
        raise ValueError("no videos to evaluate; check the data set and --max-videos.")
    labels = {label: LabelScores(ours.scores(), copy.scores(), ours.count) for label, (ours, copy) in per_label.items()}
    return LFAEEvaluation(autoencoder.scores(), baseline.scores(), num_videos, autoencoder.count, labels)


def evaluation_videos(
    data: DataConfig, *, max_videos: int | None = None, labels: bool = False, appearance: float = 0.0
) -> Iterator[torch.Tensor | tuple[torch.Tensor, str]]:
    """The test split of a data set as videos (3, F, H, W), or (video, label) pairs with `labels`: SynthFace test
    identities x labels, or a folder's test subjects (uniformly sampled frames, no augmentation). `appearance`:
    the fraction of SynthFace test videos given a photographic look (0: all flat)."""
    data = dataclasses.replace(data, dm_frame_sampling="uniform", augment=False)
    if appearance and not describe_dataset(data.dataset).has_looks:
        raise ValueError(f"a photographic look is for SynthFace videos; {data.dataset!r} videos are photographed.")
    dataset = build_dataset(data, view="clip", split="test", **({"appearance": appearance} if appearance else {}))
    count = len(dataset) if max_videos is None else min(max_videos, len(dataset))
    logger.info("evaluating on %d of %d test videos", count, len(dataset))
    for index in range(count):
        item = dataset[index]
        yield (item["video"], item["label"]) if labels else item["video"]
