"""Stage one: train the latent flow autoencoder on pairs of frames (LFDM sec. 3.1; losses of MRAA).

    python -m lfdm train-lfae --config lfdm/configs/synthface64.yaml              # CPU or one GPU
    accelerate launch -m lfdm train-lfae --config lfdm/configs/mug128.yaml        # several GPUs
    python -m lfdm train-lfae --resume runs/lfae-synthface64-20250101-120000     # continue a run
    OMP_NUM_THREADS=1 python -m lfdm train-lfae --config ...   # a CPU shared with other jobs: one thread per
                                                                # process avoids thread contention (several x faster)

Each micro-batch reconstructs the driving frame from the reference frame and warps the driving frame with a random
transform for the equivariance terms (`AutoencoderStage.losses`); the loop around it (optimiser, schedule, logs,
samples, checkpoints, resume) is `lfdm.training.loop`. `train` is importable without side effects.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from lfdm.data.factory import dataset_framing
from lfdm.framing import ModelFraming
from lfdm.models import LatentFlowAutoencoder, LFAEOutput, RegionParams
from lfdm.training import loop
from lfdm.training.config import AutoencoderTrainConfig, RunConfig
from lfdm.training.loop import Stage
from lfdm.training.losses import AutoencoderLoss, RandomWarp
from lfdm.training.stream import SampleStream, training_dataset
from lfdm.training.warm_start import init_weights

logger = logging.getLogger(__name__)


@dataclass
class TrainingForward:
    """What one training forward pass yields: the LFAE output, the regions of the warped driving frame, and the
    occlusion head's logits (B, 1, h, w) when the loss asks for them."""

    output: LFAEOutput
    transformed_regions: RegionParams | None
    occlusion_logits: torch.Tensor | None = None


class AutoencoderTrainingModel(nn.Module):
    """The LFAE plus the region predictor's second pass on the warped driving frame (equivariance), in one forward
    so that data-parallel training sees every use of the weights inside `forward`. With `keep_occlusion_logits`
    the occlusion head's output (before its sigmoid) is kept too."""

    def __init__(self, model: LatentFlowAutoencoder, *, keep_occlusion_logits: bool = False) -> None:
        super().__init__()
        self.model = model
        self.keep_occlusion_logits = keep_occlusion_logits

    def forward(self, reference: torch.Tensor, driving: torch.Tensor, warp: RandomWarp | None) -> TrainingForward:
        logits = []
        head = self.model.flow_predictor.occlusion
        hook = (
            head.register_forward_hook(lambda module, args, out: logits.append(out))
            if self.keep_occlusion_logits
            else None
        )
        try:
            output = self.model(reference, driving)
        finally:
            if hook is not None:
                hook.remove()
        transformed = self.model.region_predictor(warp.warp_images(driving)) if warp is not None else None
        return TrainingForward(output, transformed, logits[0] if logits else None)


def build_model(config: RunConfig) -> LatentFlowAutoencoder:
    """`LatentFlowAutoencoder(**config.lfae)`, with the weights of `train_lfae.init_from` when it is set."""
    model = LatentFlowAutoencoder(**config.lfae)
    init_from = config.train_lfae.init_from
    if init_from:
        if not Path(init_from).is_dir():
            raise FileNotFoundError(f"train_lfae.init_from {init_from!r} is not a save_pretrained folder.")
        source = LatentFlowAutoencoder.from_pretrained(init_from)
        if source.config.num_regions != model.config.num_regions:
            source = add_regions(source, model)
        init_weights(model, source, "train_lfae.init_from")
        logger.info("initialised the autoencoder from %s", init_from)
    return model


def record_framing(autoencoder: LatentFlowAutoencoder, dataset: str, root: str | None = None) -> None:
    """Write how `dataset`'s pictures are framed into the autoencoder's config (`framing`), so that every checkpoint
    and export carries it and a photo is later framed the same way (`lfdm.framing`). SynthFace's is measured now. A
    framing the autoencoder already has (from its config, or from the folder it was loaded from) is kept; a
    different one for this data is logged."""
    framing = dataset_framing(dataset, root)
    saved = autoencoder.config.get("framing")
    if saved is None:
        autoencoder.register_to_config(framing=framing.to_config())
    elif ModelFraming.from_config(saved) != framing:
        logger.warning(
            "the autoencoder keeps its own framing %s, which is not %s's (%s)",
            ModelFraming.from_config(saved),
            dataset,
            framing,
        )


# The tensors whose shape follows the number of regions K (C image channels, E the hourglass width):
_REGION_OUTPUTS = "region_predictor.regions"  # (K, ...): one heat map per region
_FLOW_PREDICTOR = "generator.pixelwise_flow_predictor"
_HOURGLASS_INPUT = f"{_FLOW_PREDICTOR}.hourglass.encoder.down_blocks.0.conv.weight"  # (E, (K + 1) (C + 1), ...)
_MOTION_HEADS = (f"{_FLOW_PREDICTOR}.mask", f"{_FLOW_PREDICTOR}.occlusion")  # in: E + (K + 1) (C + 1) channels


@torch.no_grad()
def add_regions(source: LatentFlowAutoencoder, model: LatentFlowAutoencoder) -> LatentFlowAutoencoder:
    """`source`'s weights in a copy of `model` that has more regions: a warm start that splits regions.

    New region K + j is a copy of old region j mod K (same heat-map filter plus 1e-3 noise, so the copies can part;
    `region_separation_weight` pushes them apart). The flow predictor shares each old region's input weights and
    mask weight equally among its copies (inputs / n, mask logit - log n), so the grown model computes what
    `source` did (up to the noise). Every tensor whose shape does not depend on the number of regions must match.
    """
    old, new = source.config.num_regions, model.config.num_regions
    if new < old:
        raise ValueError(
            f"train_lfae.init_from has {old} regions and lfae.num_regions is {new}; regions can be added to a "
            f"model, not removed. Set lfae.num_regions to {old} or more, or train from scratch."
        )
    original = torch.arange(new) % old  # the old region each new one copies
    copies = torch.bincount(original, minlength=old)[original].float()  # how many share it
    motions = torch.cat([torch.zeros(1, dtype=torch.long), original + 1])  # background first, as in the layout
    shares = torch.cat([torch.ones(1), copies])
    channels = source.config.num_channels + 1  # hourglass inputs per motion: (heat map, deformed image)
    inputs = (motions[:, None] * channels + torch.arange(channels)).flatten()  # new input channel -> old
    input_shares = shares.repeat_interleave(channels)
    grown = copy.deepcopy(model)
    theirs, target = source.state_dict(), grown.state_dict()
    parameters = {name for name, _ in source.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    for key, value in theirs.items():
        slot = target.get(key)
        if slot is None or (key not in parameters and value.shape != slot.shape):
            continue  # init_weights sorts out buffers shaped by the config
        if value.shape == slot.shape:
            slot.copy_(value)
        elif key.startswith(_REGION_OUTPUTS):
            slot.copy_(value[original])
            if key.endswith(".weight"):
                slot[old:] += 1e-3 * value.abs().mean() * torch.randn(slot[old:].shape, generator=generator)
        elif key == _HOURGLASS_INPUT:
            slot.copy_(value[:, inputs] / input_shares.view(1, -1, 1, 1))
        elif key.startswith(_MOTION_HEADS) and key.endswith(".weight"):
            width = value.shape[1] - (old + 1) * channels  # the hourglass's own features come first
            split = torch.cat([value[:, :width], value[:, width:][:, inputs] / input_shares.view(1, -1, 1, 1)], 1)
            slot.copy_(split[motions] if key.startswith(_MOTION_HEADS[0]) else split)
        elif key == f"{_MOTION_HEADS[0]}.bias":  # one mask logit per motion, shared among its copies
            slot.copy_(value[motions] - shares.log())
        else:
            raise ValueError(f"add_regions: {key} is {tuple(value.shape)} in the source and {tuple(slot.shape)} here")
    logger.info("split the %d regions of train_lfae.init_from into %d", old, new)
    return grown


def make_warp(train: AutoencoderTrainConfig, batch_size: int, *, micro_batch: int, process: int, device) -> RandomWarp:
    """The equivariance transform of one micro-batch, a function of (seed, micro-batch, process) only."""
    seed = np.random.SeedSequence([train.seed, micro_batch, process, 1]).generate_state(1, np.uint64)[0]
    generator = torch.Generator().manual_seed(int(seed))
    return RandomWarp(
        batch_size,
        sigma_affine=train.sigma_affine,
        sigma_tps=train.sigma_tps,
        points_tps=train.points_tps,
        generator=generator,
        device=device,
    )


class AutoencoderStage(Stage):
    """Stage one in the shared loop (`lfdm.training.loop`): pairs of frames, the LFAE's losses, grids of
    reconstructions, the LFAE as the export."""

    name = "lfae"

    def __init__(self, config: RunConfig, dataset: Dataset | None = None) -> None:
        self.config, self.train, self.dataset = config, config.train_lfae, dataset

    def build(self, accelerator) -> tuple[AutoencoderTrainingModel, Dataset]:
        torch.manual_seed(self.train.seed)  # the same initial weights on every process
        model = build_model(self.config).train()
        record_framing(model, self.config.data.dataset, self.config.data.root)
        if accelerator.num_processes > 1 and accelerator.device.type == "cuda":
            # the authors' BatchNorm is synchronised across GPUs; keys and single-device numerics stay the same
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        dataset = self.dataset if self.dataset is not None else training_dataset(self.config.data, view="pair")
        self.criterion = AutoencoderLoss.from_config(self.train).to(accelerator.device)
        keep_logits = self.criterion.occlusion_logit_weight > 0
        return AutoencoderTrainingModel(model, keep_occlusion_logits=keep_logits), dataset

    def losses(self, accelerator, training_model, batch, micro_batch: int) -> dict[str, torch.Tensor]:
        """Reconstruct the driving frame from the reference frame; with equivariance terms, also find the regions
        of the driving frame under a random warp (a function of the micro-batch and process)."""
        reference = batch["reference"].to(accelerator.device, non_blocking=True)
        driving = batch["driving"].to(accelerator.device, non_blocking=True)
        warp = None
        if self.criterion.uses_equivariance:
            warp = make_warp(
                self.train,
                driving.shape[0],
                micro_batch=micro_batch,
                process=accelerator.process_index,
                device=accelerator.device,
            )
        forward = training_model(reference, driving, warp)
        with accelerator.autocast():
            output = forward.output
            losses = self.criterion(
                output.prediction,
                driving,
                output.driving_regions,
                forward.transformed_regions,
                warp,
                reference=reference,
                occlusion_logits=forward.occlusion_logits,
            )
        return {"loss": losses.total, **losses.terms}

    def prepare_samples(self, dataset: Dataset) -> None:
        """A fixed set of pairs (from its own stream) shown in every sample grid of a run."""
        stream = SampleStream(dataset, seed=self.train.seed + 1)
        items = [stream[n] for n in range(self.train.num_samples)]
        self.sample_batch = {key: torch.stack([item[key] for item in items]) for key in ("reference", "driving")}

    def write_samples(self, model: AutoencoderTrainingModel, stem: Path) -> None:
        save_sample_grid(model.model, self.sample_batch, stem.with_suffix(".png"))

    def export(self, model: AutoencoderTrainingModel) -> LatentFlowAutoencoder:
        return model.model


def train(config: RunConfig, resume: str | None = None, *, dataset: Dataset | None = None) -> Path:
    """Run stage one as `config` says; `resume`: a run folder or checkpoint folder to continue.

    `dataset` replaces the data set `config.data` names (any map-style set of pair-view items).

    Returns the run folder; the trained model is its `model/` sub-folder (`LatentFlowAutoencoder.from_pretrained`).
    """
    return loop.train(AutoencoderStage(config, dataset), resume)


@torch.no_grad()
def save_sample_grid(model: LatentFlowAutoencoder, batch: dict[str, torch.Tensor], path: Path) -> Path:
    """One row per pair: reference | driving | reconstruction | warped reference | flow | occlusion (PNG)."""
    from lfdm.viz import flow_to_color, occlusion_to_image, panel_grid

    was_training = model.training
    model.eval()  # BatchNorm running statistics, as at inference; and no statistics update on one process only
    device = next(model.parameters()).device
    reference, driving = batch["reference"].to(device), batch["driving"].to(device)
    output = model(reference, driving)
    model.train(was_training)

    def pixels(images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, H, W, 3) float in [0, 1] on the CPU
        return images.float().clamp(0, 1).permute(0, 2, 3, 1).cpu()

    columns = {
        "reference": pixels(reference),
        "driving": pixels(driving),
        "reconstruction": pixels(output.prediction),
        "warped": pixels(output.warped),
        "flow": flow_to_color(output.flow.float().cpu()),  # one colour scale for the whole grid
        "occlusion": occlusion_to_image(output.occlusion[:, 0].float().cpu()),
    }
    # the pairs go through the panel as "frames": one row per pair, the captions once on top
    tile = max(reference.shape[-1], 128)
    grid = panel_grid(columns, scale=tile / reference.shape[-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path
