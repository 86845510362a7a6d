"""How good are generated videos: action accuracy, Fréchet distances and identity preservation, per sampler.

For every test case (SynthFace: one test identity with every label; real data: one test video with its label) the
pipeline animates the case's input frame (frame 0 of its real test videos: SynthFace's neutral face) once per
label, for every sampler setting (scheduler, steps, guidance), with the same seed for the same (case, label).
Reported per setting:

- `action_accuracy`: the fraction of generated videos the action classifier gives their label;
- `fcd`: the Fréchet classifier distance between the classifier features of the generated and the real test
  videos (`lfdm.evaluation.frechet`; not FVD), next to the floor `fcd_floor`, FCD(real train, real test) over as
  many videos; `fvd` likewise when an I3D network is given. The generated videos start from the test videos' own
  first frames and the floor's training videos show other people, so a good model can land below the floor;
- `frame0_psnr`: PSNR of generated frame 0 against the input frame (dB; the video starts where the image is);
- `seconds_per_video`: wall time of the pipeline calls over the number of videos.

Once per run: the classifier's accuracy on the real test videos, and the LFAE's reconstruction of the real test
videos from their frame 0 (`lfdm.evaluation.lfae`), the ceiling of what the generated frames can look like: its
PSNR and SSIM, and the action accuracy and FCD of the reconstructed videos, roughly the best scores a diffusion
model that generates this LFAE's flows can reach (a gap between them and a sampler's is the diffusion model's; a
gap between them and the real videos' is the LFAE's).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from lfdm.data.factory import make_dataset
from lfdm.evaluation.accuracy import AccuracyReport, accuracy_report
from lfdm.evaluation.classifier import ActionClassifier
from lfdm.evaluation.frechet import frechet_distance_of_features, i3d_features
from lfdm.evaluation.lfae import LFAEEvaluation, ReconstructionScores, evaluate_reconstruction
from lfdm.metrics import psnr
from lfdm.schedulers import DEFAULT_STEPS, make_scheduler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplerSetting:
    """One way to sample: scheduler name (`lfdm.schedulers.make_scheduler`), steps, guidance scale."""

    scheduler: str
    steps: int
    guidance: float

    @property
    def name(self) -> str:
        return f"{self.scheduler}-{self.steps} g{self.guidance:g}"


def parse_sampler_settings(
    configs: str, guidance: str | Sequence[float] = "1.0", default_steps: Callable[[str], int] | None = None
) -> list[SamplerSetting]:
    """ "ddpm:1000,dpmsolver:25" and "1.0,2.0" -> every config with every guidance scale.

    A config is `scheduler[:steps[:guidance]]`; without steps `default_steps(scheduler)` (the evaluated model's
    count, `lfdm.schedulers.default_steps`), else the scheduler's usual count (`DEFAULT_STEPS`); with a guidance of
    its own it ignores the `guidance` list.
    """
    scales = [float(value) for value in guidance.split(",")] if isinstance(guidance, str) else list(guidance)
    settings = []
    for entry in (part.strip() for part in configs.split(",")):
        if not entry:
            continue
        name, *rest = entry.split(":")
        if name not in DEFAULT_STEPS:
            raise ValueError(f"unknown scheduler {name!r} in {entry!r}; choose one of {sorted(DEFAULT_STEPS)}.")
        if len(rest) > 2:
            raise ValueError(f"a sampler config is scheduler[:steps[:guidance]]; got {entry!r}.")
        steps = int(rest[0]) if rest and rest[0] else (default_steps or DEFAULT_STEPS.__getitem__)(name)
        if steps < 1:
            raise ValueError(f"steps must be >= 1; got {entry!r}.")
        for scale in [float(rest[1])] if len(rest) == 2 else scales:
            if not np.isfinite(scale) or scale < 0:
                raise ValueError(f"guidance scales must be finite and >= 0; got {scale}.")
            settings.append(SamplerSetting(name, steps, scale))
    if not settings:
        raise ValueError(f"no sampler configs in {configs!r}; e.g. 'ddpm:1000,dpmsolver:25'.")
    return list(dict.fromkeys(settings))


# ---------------------------------------------------------------------------------------------------------------------
# Test cases


@dataclass
class EvaluationCase:
    """One input frame and what to generate from it.

    image (3, H, W) in [0, 1]; labels: the L labels to generate; real (L, 3, F, H, W) in [0, 1]: the real test
    video of each label that starts at `image`; identity: who it is.
    """

    identity: str
    image: torch.Tensor
    labels: list[str]
    real: torch.Tensor


def synthface_cases(
    split: str, num_identities: int, *, resolution: int, num_frames: int, seed: int = 0, labels=None
) -> Iterator[EvaluationCase]:
    """One case per identity of a SynthFace split: take 0 of every label; its frame 0 (neutral) is the input."""
    from lfdm.data.synthetic import SYNTHFACE_LABELS

    labels = list(labels or SYNTHFACE_LABELS)
    dataset = make_dataset(
        "synthface", split=split, resolution=resolution, num_frames=num_frames, num_identities=num_identities,
        seed=seed, labels=labels,
    )  # fmt: skip
    for start in range(0, len(dataset), len(labels)):
        items = [dataset[index] for index in range(start, start + len(labels))]
        real = torch.stack([item["video"] for item in items])
        # Labels of a take share their timing, and every expression starts after frame 0: one input per identity.
        yield EvaluationCase(items[0]["identity"], real[0, :, 0], [item["label"] for item in items], real)


def dataset_cases(dataset: Dataset, *, max_videos: int | None = None) -> Iterator[EvaluationCase]:
    """One case per clip-view item of a data set (real videos): its frame 0 and its label."""
    count = len(dataset) if max_videos is None else min(max_videos, len(dataset))
    # evenly spread over the data set (which is sorted by subject and label), so a cap keeps every kind of video
    for index in np.linspace(0, len(dataset) - 1, count).round().astype(int):
        item = dataset[int(index)]
        video = item["video"]
        yield EvaluationCase(item["identity"], video[:, 0], [item["label"]], video[None])


# ---------------------------------------------------------------------------------------------------------------------
# Results


@dataclass
class SamplerScores:
    """The scores of one sampler setting over `num_videos` generated videos (see the module docstring)."""

    scheduler: str
    steps: int
    guidance: float
    action_accuracy: float
    per_label_accuracy: dict[str, float]
    fcd: float
    fcd_ratio: float | None  # fcd / fcd_floor (None when the floor is 0)
    frame0_psnr: float
    seconds_per_video: float
    num_videos: int
    fvd: float | None = None


@dataclass
class GenerationEvaluation:
    """Everything `evaluate_generation` measured; `to_dict()` is the JSON record."""

    samplers: list[SamplerScores]
    labels: list[str]
    num_cases: int
    num_videos: int
    classifier_real_accuracy: float
    classifier_real_per_label: dict[str, float]
    fcd_floor: float
    lfae_reconstruction: ReconstructionScores
    lfae_copy_frame_0: ReconstructionScores
    # The classifier on the LFAE's reconstructions of the real test videos: roughly the best a diffusion model
    # generating this LFAE's flows can score.
    lfae_reconstruction_accuracy: float
    lfae_reconstruction_per_label: dict[str, float]
    lfae_reconstruction_fcd: float
    fvd_floor: float | None = None
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def _rows(self) -> list[list[str]]:
        rows = []
        for scores in self.samplers:
            ratio = "" if scores.fcd_ratio is None else f"{scores.fcd_ratio:.2f}"
            fvd = [] if self.fvd_floor is None else ["" if scores.fvd is None else f"{scores.fvd:.1f}"]
            rows.append([
                scores.scheduler, str(scores.steps), f"{scores.guidance:g}", f"{scores.action_accuracy * 100:.1f}",
                f"{scores.fcd:.2f}", ratio, *fvd, f"{scores.frame0_psnr:.2f}", f"{self.lfae_reconstruction.psnr:.2f}",
                f"{scores.seconds_per_video:.2f}",
            ])  # fmt: skip
        return rows

    def _header(self) -> list[str]:
        fvd = ["FVD"] if self.fvd_floor is not None else []
        return ["sampler", "steps", "guidance", "accuracy %", "FCD", "FCD / floor", *fvd, "frame-0 PSNR",
                "LFAE PSNR", "s / video"]  # fmt: skip

    def _summary(self) -> list[str]:
        lines = [
            f"{self.num_videos} generated videos per sampler ({self.num_cases} inputs x their labels) on {self.device}",
            f"classifier accuracy on the real test videos: {self.classifier_real_accuracy * 100:.1f} %",
            f"FCD floor, real train vs real test videos: {self.fcd_floor:.2f} (FCD is the Frechet distance of "
            "classifier features, not FVD)",
            f"LFAE reconstruction of the real test videos from frame 0: {self.lfae_reconstruction.psnr:.2f} dB PSNR, "
            f"SSIM {self.lfae_reconstruction.ssim:.4f} (copying frame 0: {self.lfae_copy_frame_0.psnr:.2f} dB)",
            f"the same reconstructions, scored as the generated videos (about the best a diffusion model on this "
            f"LFAE's flows can do): accuracy {self.lfae_reconstruction_accuracy * 100:.1f} %, FCD "
            f"{self.lfae_reconstruction_fcd:.2f}" + self._ratio(self.lfae_reconstruction_fcd),
        ]
        if self.fvd_floor is not None:
            lines.append(f"FVD floor (I3D), real train vs real test videos: {self.fvd_floor:.1f}")
        return lines + self.notes

    def _ratio(self, fcd: float) -> str:
        return f" ({fcd / self.fcd_floor:.2f} x the floor)" if self.fcd_floor > 0 else ""

    def table(self) -> str:
        """Plain text for the terminal."""
        header, rows = self._header(), self._rows()
        widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
        lines = [
            "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *rows]
        ]
        return "\n".join(lines + [""] + self._summary())

    def markdown(self) -> str:
        """A Markdown table and its notes, for `benchmarks/RESULTS.md`."""
        lines = ["| " + " | ".join(self._header()) + " |", "|" + " --- |" * len(self._header())]
        lines += ["| " + " | ".join(row) + " |" for row in self._rows()]
        return "\n".join(lines + [""] + [f"- {line}" for line in self._summary()]) + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation


def _seed(seed: int, case_index: int, label: str) -> int:
    """The noise seed of one video: the same for every sampler setting, different for every case and label."""
    label_code = int.from_bytes(label.encode()[:8].ljust(8, b"\0"), "little")
    return int(np.random.SeedSequence([seed, case_index, label_code]).generate_state(1)[0])


def generate_case(pipe, case: EvaluationCase, setting: SamplerSetting, *, seed: int, case_index: int,
                  batch_size: int) -> tuple[torch.Tensor, float]:  # fmt: skip
    """Generate one video per label of a case: (L, 3, F, H, W) in [0, 1] on the CPU, and the wall seconds."""
    image = case.image[None]  # (1, 3, H, W)
    videos, seconds = [], 0.0
    for start in range(0, len(case.labels), batch_size):
        labels = case.labels[start : start + batch_size]
        generators = [torch.Generator().manual_seed(_seed(seed, case_index, label)) for label in labels]
        began = time.perf_counter()
        output = pipe(image, labels, num_inference_steps=setting.steps, guidance_scale=setting.guidance,
                      generator=generators, output_type="pt", face="none")  # fmt: skip
        seconds += time.perf_counter() - began
        videos.append(rearrange(output.frames, "b f h w c -> b c f h w"))
    return torch.cat(videos), seconds


class _Collector:
    """Per sampler setting: classifier outputs, frame-0 PSNRs and seconds, gathered case by case."""

    def __init__(self) -> None:
        self.predictions: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.features: list[torch.Tensor] = []
        self.i3d: list[torch.Tensor] = []
        self.frame0_psnr: list[torch.Tensor] = []
        self.seconds = 0.0

    def report(self, labels: list[str]) -> AccuracyReport:
        return accuracy_report(torch.cat(self.predictions), torch.cat(self.targets), labels)


def _classify(classifier: ActionClassifier, videos: torch.Tensor, labels: list[str], collector: _Collector,
              i3d=None) -> None:  # fmt: skip
    out = classifier.predict(videos)
    collector.predictions.append(out.logits.argmax(dim=1))
    collector.targets.append(torch.tensor([classifier.labels.index(label) for label in labels]))
    collector.features.append(out.features)
    if i3d is not None:
        collector.i3d.append(i3d_features(i3d, videos))


def _check_labels(pipe, classifier: ActionClassifier, labels: Iterable[str]) -> None:
    for label in set(labels):
        if label not in pipe.labels:
            raise ValueError(f"the test label {label!r} is not one the model knows ({pipe.labels}).")
        if label not in classifier.labels:
            raise ValueError(
                f"the test label {label!r} is not one the classifier knows ({classifier.labels}); train a classifier "
                "on this data first: python -m lfdm train-classifier --data ... --data-root ..."
            )


def evaluate_generation(
    pipe,
    classifier: ActionClassifier,
    cases: Iterable[EvaluationCase],
    reference: Iterable[EvaluationCase],
    settings: Sequence[SamplerSetting],
    *,
    seed: int = 0,
    batch_size: int = 8,
    i3d: torch.nn.Module | None = None,
) -> GenerationEvaluation:
    """Generate and score (module docstring). `cases` are the test inputs and their real videos; `reference` the
    real training videos of the FCD floor (their `real` videos only are used). Videos are held one case at a time.
    """
    original_scheduler = pipe.scheduler
    real, floor, reconstructed = _Collector(), _Collector(), _Collector()
    generated = {setting: _Collector() for setting in settings}
    lfae_scores = []
    try:
        for case_index, case in enumerate(cases):
            _check_labels(pipe, classifier, case.labels)
            if case_index == 0:  # the first call pays for allocations and kernel choices: keep it out of the timings
                pipe(case.image[None], case.labels[:1], num_inference_steps=1, output_type="pt", face="none")
            _classify(classifier, case.real, case.labels, real, i3d)
            reconstructions = []
            lfae_scores.append(
                evaluate_reconstruction(pipe.lfae, case.real.to(pipe.device), reconstructions=reconstructions)
            )
            _classify(classifier, torch.stack(reconstructions), case.labels, reconstructed)
            for setting in settings:
                pipe.scheduler = make_scheduler(setting.scheduler, base_config=original_scheduler.config)
                videos, seconds = generate_case(pipe, case, setting, seed=seed, case_index=case_index,
                                                batch_size=batch_size)  # fmt: skip
                collector = generated[setting]
                collector.seconds += seconds
                _classify(classifier, videos, case.labels, collector, i3d)
                first = videos[:, :, 0]  # generated frame 0, (L, 3, H, W)
                collector.frame0_psnr.append(psnr(first, case.image[None].expand_as(first).to(first.dtype)))
                logger.info("case %d (%s), %s: %.1f s", case_index + 1, case.identity, setting.name, seconds)
    finally:
        pipe.scheduler = original_scheduler
    if not lfae_scores:
        raise ValueError("no test videos to evaluate; check the data set and --num-identities / --max-videos.")
    for case in reference:
        _classify(classifier, case.real, case.labels, floor, i3d)
    return _summarise(pipe, classifier, settings, real, floor, reconstructed, generated, lfae_scores, i3d is not None)


def _summarise(pipe, classifier, settings, real, floor, reconstructed, generated, lfae_scores, with_fvd):
    real_features = torch.cat(real.features)
    fcd_floor = frechet_distance_of_features(torch.cat(floor.features), real_features)
    fvd_floor = frechet_distance_of_features(torch.cat(floor.i3d), torch.cat(real.i3d)) if with_fvd else None
    real_report = real.report(classifier.labels)
    samplers = []
    for setting in settings:
        collector = generated[setting]
        report = collector.report(classifier.labels)
        fcd = frechet_distance_of_features(torch.cat(collector.features), real_features)
        fvd = frechet_distance_of_features(torch.cat(collector.i3d), torch.cat(real.i3d)) if with_fvd else None
        samplers.append(
            SamplerScores(
                scheduler=setting.scheduler,
                steps=setting.steps,
                guidance=setting.guidance,
                action_accuracy=report.accuracy,
                per_label_accuracy=report.per_label,
                fcd=fcd,
                fcd_ratio=fcd / fcd_floor if fcd_floor > 0 else None,
                frame0_psnr=float(torch.cat(collector.frame0_psnr).mean()),
                seconds_per_video=collector.seconds / report.count,
                num_videos=report.count,
                fvd=fvd,
            )
        )
    lfae = _merge_lfae(lfae_scores)
    reconstructed_report = reconstructed.report(classifier.labels)
    num_videos = real_report.count
    notes = []
    if num_videos <= real_features.shape[1]:
        notes.append(
            f"only {num_videos} videos for {real_features.shape[1]}-D features: the covariances are singular and "
            "FCD is biased upwards; compare it only with the floor, which uses as many videos"
        )
    return GenerationEvaluation(
        samplers=samplers,
        labels=sorted(set(real_report.per_label), key=classifier.labels.index),
        num_cases=len(lfae_scores),
        num_videos=num_videos,
        classifier_real_accuracy=real_report.accuracy,
        classifier_real_per_label=real_report.per_label,
        fcd_floor=fcd_floor,
        lfae_reconstruction=lfae.autoencoder,
        lfae_copy_frame_0=lfae.copy_frame_0,
        lfae_reconstruction_accuracy=reconstructed_report.accuracy,
        lfae_reconstruction_per_label=reconstructed_report.per_label,
        lfae_reconstruction_fcd=frechet_distance_of_features(torch.cat(reconstructed.features), real_features),
        fvd_floor=fvd_floor,
        device=str(pipe.device),
        notes=notes,
    )


def _merge_lfae(evaluations: list[LFAEEvaluation]) -> LFAEEvaluation:
    """Frame-weighted means of several `evaluate_reconstruction` results."""
    total = sum(evaluation.num_frames for evaluation in evaluations)

    def mean(scores: Sequence[ReconstructionScores]) -> ReconstructionScores:
        weights = [evaluation.num_frames / total for evaluation in evaluations]
        return ReconstructionScores(
            **{
                name: sum(getattr(score, name) * weight for score, weight in zip(scores, weights, strict=True))
                for name in ("l1", "psnr", "ssim")
            }
        )

    return LFAEEvaluation(
        autoencoder=mean([evaluation.autoencoder for evaluation in evaluations]),
        copy_frame_0=mean([evaluation.copy_frame_0 for evaluation in evaluations]),
        num_videos=sum(evaluation.num_videos for evaluation in evaluations),
        num_frames=total,
    )
