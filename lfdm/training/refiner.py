"""Train the photo refiner (`lfdm.models.refiner.PhotoRefiner`) on SynthFace pairs rendered large.

A training example is what the refiner sees when a photo is animated at its own size (`lfdm.photo`), made from a
pair of frames (reference, driving) rendered at `refiner.scale` x the LFAE's size (256 px for the shipped 64 px
model), with SynthFace's photographic looks:

1. both frames shrunk to the LFAE's size (area-averaged, as a photo is shrunk to the model's frame);
2. the frozen LFAE estimates the reference's flow to itself and to the driving frame, and decodes the driving frame;
3. as in `render_photo_video`: the displacement (flow minus the reference's own) and the new content
   ((m_0 - m_t) / m_0) upsampled bicubically; the large reference warped by the displacement (bicubic); the
   decoder's frame upsampled bilinearly, and its frame of the reference warped by the displacement;
4. the target is the large driving frame.

Crops (`train_refiner.crop`) are taken mostly where the content is newest (mouths, eyes), from a pool of examples
made once (`RefinerExamples`). The loss is the L1 error
of the refined frame and of its horizontal and vertical differences (so blur is paid for), plus a small price on the
gate (keep the photo's own pixels unless painting pays). The loop (optimiser, logs, samples, checkpoints, resume)
is `lfdm.training.loop`.

    python -m lfdm train-refiner --config lfdm/configs/refiner256.yaml --lfae checkpoints --output-dir runs/refiner
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from lfdm.models.lfae import LatentFlowAutoencoder
from lfdm.models.refiner import PhotoRefiner
from lfdm.training import loop
from lfdm.training.config import RefinerTrainConfig, RunConfig
from lfdm.training.dm_targets import load_frozen_lfae
from lfdm.training.loop import Stage
from lfdm.training.stream import SampleStream, training_dataset
from lfdm.training.warm_start import init_weights

logger = logging.getLogger(__name__)

_NEW_CONTENT_EPS = 1e-3  # as lfdm.photo


@dataclasses.dataclass
class RefinerInputs:
    """One batch of refiner examples, all (B, C, S, S) at the refiner's size: warped, decoded, decoded_start (3
    channels), new_content (1), target (3)."""

    warped: torch.Tensor
    decoded: torch.Tensor
    decoded_start: torch.Tensor
    new_content: torch.Tensor
    target: torch.Tensor

    def crop(self, tops: list[int], lefts: list[int], size: int) -> RefinerInputs:
        """Each example's `size` x `size` crop at (top, left)."""
        corners = list(zip(tops, lefts, strict=True))
        cut = lambda x: torch.stack(
            [x[i, :, top : top + size, left : left + size] for i, (top, left) in enumerate(corners)]
        )
        return RefinerInputs(*(cut(getattr(self, f.name)) for f in dataclasses.fields(self)))


@torch.no_grad()
def make_inputs(lfae: LatentFlowAutoencoder, reference: torch.Tensor, driving: torch.Tensor) -> RefinerInputs:
    """reference, driving (B, 3, S, S) in [0, 1] at the refiner's size -> `RefinerInputs` (see the module docstring)."""
    size, small = reference.shape[-1], lfae.config.image_size
    if size % small:
        raise ValueError(f"the frames ({size} px) must be a whole multiple of the LFAE's size ({small} px).")
    shrink = lambda x: F.interpolate(x, size=(small, small), mode="area")
    reference_small, driving_small = shrink(reference), shrink(driving)
    dtype = lfae.dtype
    rest = lfae.estimate_flow(reference_small.to(dtype), reference_small.to(dtype))
    moved = lfae.estimate_flow(reference_small.to(dtype), driving_small.to(dtype))
    pair = lambda first, now: rearrange(torch.stack([first, now], 1), "b f ... -> (b f) ...")  # grouped (b f)
    both = lfae.decode(
        reference_small.to(dtype), pair(rest.flow, moved.flow), pair(rest.occlusion, moved.occlusion)
    ).prediction.float()  # (2 B, 3, h, w): per reference, its decoded self, then the decoded driving frame
    decoded_start, decoded = rearrange(both, "(b f) c h w -> f b c h w", f=2)
    first, now = rest.occlusion.float(), moved.occlusion.float()
    new_content = ((first - now) / first.clamp_min(_NEW_CONTENT_EPS)).clamp(0, 1)  # (B, 1, h, w)
    shift = (moved.flow.float() - rest.flow.float()).permute(0, 3, 1, 2)  # (B, 2, h, w) grid units
    maps = F.interpolate(torch.cat([shift, new_content], 1), size=(size, size), mode="bicubic", align_corners=False)
    grid = _pixel_centre_grid(size, reference.device) + maps[:, :2].permute(0, 2, 3, 1)
    warped = F.grid_sample(reference, grid, mode="bicubic", padding_mode="border", align_corners=False)
    # the decoder's picture of the reference warped like the photo: the decoded frame minus it is the change
    decoded_start = F.grid_sample(decoded_start, grid, mode="bilinear", padding_mode="border", align_corners=False)
    decoded = F.interpolate(decoded, size=(size, size), mode="bilinear", align_corners=False)
    return RefinerInputs(warped, decoded, decoded_start, maps[:, 2:].clamp(0, 1), driving)


def _pixel_centre_grid(size: int, device) -> torch.Tensor:
    """(1, S, S, 2) sampling grid of the pixel centres, (x, y), for `grid_sample(align_corners=False)`."""
    centres = (2 * torch.arange(size, device=device, dtype=torch.float32) + 1) / size - 1
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([x, y], -1)[None]


def crop_corners(new_content: torch.Tensor, size: int, fraction_new: float, generator: torch.Generator):
    """(tops, lefts) of one `size` crop per example: with probability `fraction_new` centred (with jitter) on a
    pixel drawn in proportion to the new content, else anywhere. new_content (B, 1, S, S)."""
    full = new_content.shape[-1]
    tops, lefts = [], []
    for weights in new_content[:, 0].cpu():
        if torch.rand((), generator=generator) < fraction_new and weights.sum() > 1e-3:
            index = int(torch.multinomial(weights.flatten(), 1, generator=generator))
            jitter = torch.randint(-size // 4, size // 4 + 1, (2,), generator=generator)
            centre_y, centre_x = index // full + int(jitter[0]), index % full + int(jitter[1])
        else:
            centre_y, centre_x = (int(v) for v in torch.randint(0, full, (2,), generator=generator))
        tops.append(int(np.clip(centre_y - size // 2, 0, full - size)))
        lefts.append(int(np.clip(centre_x - size // 2, 0, full - size)))
    return tops, lefts


class RefinerExamples(Dataset):
    """A pool of refiner training crops, made once: `pool_size` pairs of `pairs` through the LFAE
    (`make_inputs`), `crops_per_pair` crops of each (`crop_corners`), kept in memory as float16.

    Making an example costs far more than training on it (rendering at 256 px, two flow estimates and a decode), so
    the refiner trains for many epochs over one pool, with random flips. `cache_file`: where the pool is saved after
    it is made and read back on the next start (a resumed run skips the work); None keeps it in memory only.
    Items are dicts of (C, crop, crop) float32 tensors: warped, decoded, decoded_start, new_content, target.
    """

    FIELDS = ("warped", "decoded", "decoded_start", "new_content", "target")

    def __init__(self, pairs: Dataset, lfae: LatentFlowAutoencoder, train: RefinerTrainConfig, cache_file=None):
        if cache_file is not None and Path(cache_file).is_file():
            self.tensors = torch.load(cache_file, weights_only=True)
            if tuple(self.tensors) == self.FIELDS:
                logger.info("read %d refiner examples from %s", len(self), cache_file)
                return
            logger.info("%s holds other fields %s; making the pool again", cache_file, tuple(self.tensors))
        generator = torch.Generator().manual_seed(train.seed)
        stream = SampleStream(pairs, seed=train.seed + 2)
        parts = {name: [] for name in self.FIELDS}
        batch_size = 8
        for start in range(0, train.pool_size, batch_size):
            items = [stream[n] for n in range(start, min(start + batch_size, train.pool_size))]
            reference = torch.stack([item["reference"] for item in items])
            driving = torch.stack([item["driving"] for item in items])
            inputs = make_inputs(lfae, reference.to(lfae.device), driving.to(lfae.device))
            for _ in range(train.crops_per_pair):
                tops, lefts = crop_corners(inputs.new_content, train.crop, train.new_content_crops, generator)
                cropped = inputs.crop(tops, lefts, train.crop)
                for name in self.FIELDS:
                    parts[name].append(getattr(cropped, name).half().cpu())
            if (start // batch_size) % 25 == 0:
                logger.info("refiner examples: %d of %d pairs", start + len(items), train.pool_size)
        self.tensors = {name: torch.cat(chunks) for name, chunks in parts.items()}
        if cache_file is not None:
            Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.tensors, cache_file)

    def __len__(self) -> int:
        return len(self.tensors["target"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: tensor[index].float() for name, tensor in self.tensors.items()}


def refiner_loss(image: torch.Tensor, gate: torch.Tensor, target: torch.Tensor, train: RefinerTrainConfig):
    """dict of the loss terms and "loss", their weighted sum (see the module docstring)."""
    dx = lambda x: x[..., :, 1:] - x[..., :, :-1]
    dy = lambda x: x[..., 1:, :] - x[..., :-1, :]
    l1 = (image - target).abs().mean()
    gradient = 0.5 * ((dx(image) - dx(target)).abs().mean() + (dy(image) - dy(target)).abs().mean())
    gate_mean = gate.mean()
    total = train.l1_weight * l1 + train.gradient_weight * gradient + train.gate_weight * gate_mean
    return {"loss": total, "l1": l1.detach(), "gradient": gradient.detach(), "gate": gate_mean.detach()}


class RefinerStage(Stage):
    """The photo refiner in the shared loop: SynthFace pairs rendered large, a frozen LFAE, crops, the refiner."""

    name = "refiner"

    def __init__(self, config: RunConfig, lfae: str | Path | None = None, dataset: Dataset | None = None) -> None:
        self.config, self.dataset = config, dataset
        if config.train_refiner is None:
            raise ValueError("the config has no train_refiner section; start from lfdm/configs/refiner256.yaml.")
        self.train = config.train_refiner
        if lfae is not None:
            self.train = dataclasses.replace(self.train, lfae=str(lfae))
            config.train_refiner = self.train
        if self.train.lfae is None:
            raise ValueError("train the refiner with a trained autoencoder: pass --lfae DIR or set train_refiner.lfae.")

    def build(self, accelerator) -> tuple[PhotoRefiner, Dataset]:
        torch.manual_seed(self.train.seed)
        self.autoencoder = load_frozen_lfae(self.train.lfae).to(accelerator.device)
        model = PhotoRefiner(**(self.config.refiner or {}))
        expected = model.config.scale * self.autoencoder.config.image_size
        if self.config.data.resolution != expected:
            raise ValueError(
                f"data.resolution must be refiner.scale x the LFAE's image size = {expected} px; got "
                f"{self.config.data.resolution}."
            )
        if self.train.crop > expected:
            raise ValueError(f"train_refiner.crop ({self.train.crop}) must be at most the frame size {expected}.")
        if self.train.init_from:
            folder = Path(self.train.init_from)
            folder = folder / "refiner" if (folder / "refiner" / "config.json").is_file() else folder
            init_weights(model, PhotoRefiner.from_pretrained(folder), "train_refiner.init_from")
        self.pairs = self.dataset if self.dataset is not None else training_dataset(self.config.data, view="pair")
        name = f"examples-{self.train.pool_size}-{self.train.crops_per_pair}x{self.train.crop}-{self.train.seed}.pt"
        cache = self.train.cache_dir and Path(self.train.cache_dir) / name
        return model.train(), RefinerExamples(self.pairs, self.autoencoder, self.train, cache or None)

    def losses(self, accelerator, training_model, batch, micro_batch: int) -> dict[str, torch.Tensor]:
        inputs = {name: batch[name].to(accelerator.device, non_blocking=True) for name in RefinerExamples.FIELDS}
        if micro_batch % 2:  # mirrored faces are faces too
            inputs = {name: value.flip(-1) for name, value in inputs.items()}
        with accelerator.autocast():
            output = training_model(inputs["warped"], inputs["decoded"], inputs["decoded_start"], inputs["new_content"])
        return refiner_loss(output.image.float(), output.gate.float(), inputs["target"], self.train)

    def prepare_samples(self, dataset: Dataset) -> None:
        stream = SampleStream(self.pairs, seed=self.train.seed + 1)
        items = [stream[n] for n in range(self.train.num_samples)]
        self.sample_batch = {key: torch.stack([item[key] for item in items]) for key in ("reference", "driving")}

    @torch.no_grad()
    def write_samples(self, model: PhotoRefiner, stem: Path) -> None:
        """One row per pair: warped | decoded (upsampled) | refined | target | gate."""
        device = next(model.parameters()).device
        inputs = make_inputs(self.autoencoder, *(self.sample_batch[k].to(device) for k in ("reference", "driving")))
        was_training = model.training
        output = model.eval()(inputs.warped, inputs.decoded, inputs.decoded_start, inputs.new_content)
        model.train(was_training)
        columns = [inputs.warped, inputs.decoded, output.image, inputs.target, output.gate.expand(-1, 3, -1, -1)]
        rows = torch.cat(
            [torch.cat(list(column), dim=-1) for column in zip(*columns, strict=True)], dim=-2
        )  # (3, B*S, 5*S)
        pixels = (rows.float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        stem.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(stem.with_suffix(".png"))

    def export(self, model: nn.Module) -> PhotoRefiner:
        return model


def train(config: RunConfig, lfae: str | Path | None = None, resume: str | None = None) -> Path:
    """Train the refiner as `config` says; `lfae`: the trained autoencoder (else `train_refiner.lfae`); `resume`: a
    run or checkpoint folder. Returns the run folder; its `model/` holds the refiner (`PhotoRefiner.from_pretrained`).
    """
    return loop.train(RefinerStage(config, lfae), resume)
