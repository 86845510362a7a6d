"""The latent flow autoencoder (LFAE), stage one of LFDM (Ni et al., CVPR 2023, sec. 3.1), built on MRAA.

Notation (paper -> code):
    x_0 (reference image)        `reference` (B, 3, H, W) in [0, 1]
    x_i (driving frame)          `driving` (B, 3, H, W) in [0, 1]
    z_0 = Phi(x_0)               `encode(reference)` (B, C, h, w), the DM's image condition
    f_i (latent flow)            `flow` (B, h, w, 2), absolute backward sampling grid in [-1, 1], (x, y)
    m_i (occlusion map)          `occlusion` (B, 1, h, w) in [0, 1], 1 = visible in the reference
    z_i = m_i * W(z_0, f_i)      the warped, gated features the decoder starts from
    x_hat_i = Omega(z_i)         `prediction` (B, 3, H, W) in [0, 1]
with h = w = H / 4 at the paper's size (32 for 128 px) and C = 256.

State dict: three sub-modules, `generator.*`, `region_predictor.*` and `background_predictor.*`. Inside each, the
keys are exactly the authors' (their checkpoints store the three as separate dicts, the background one under the
name `bg_predictor`), so `lfdm.released_checkpoints.load_official_lfae` only adds a prefix per sub-dict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from einops import repeat
from torch import nn

from lfdm.framing import ModelFraming
from lfdm.models.lfae.background_motion import BackgroundMotionPredictor
from lfdm.models.lfae.generator import Generator
from lfdm.models.lfae.region_predictor import RegionParams, RegionPredictor


@dataclass
class FlowEstimate(BaseOutput):
    """flow (B, h, w, 2) absolute grid in [-1, 1], (x, y); occlusion (B, 1, h, w) in [0, 1], 1 = visible;
    reference_regions / driving_regions: `RegionParams`; background (B, 3, 3) affine, last row [0, 0, 1]."""

    flow: torch.Tensor
    occlusion: torch.Tensor
    reference_regions: RegionParams
    driving_regions: RegionParams
    background: torch.Tensor


@dataclass
class DecodeOutput(BaseOutput):
    """prediction (N, 3, H, W) in [0, 1]: the decoded frames; warped (N, 3, H, W): the reference warped by the
    (up-sampled) flow, without occlusion gating."""

    prediction: torch.Tensor
    warped: torch.Tensor


@dataclass
class LFAEOutput(BaseOutput):
    """Everything a training step needs: `prediction`, `warped` (B, 3, H, W) in [0, 1]; `flow` (B, h, w, 2);
    `occlusion` (B, 1, h, w); `reference_regions`, `driving_regions` (`RegionParams`); `background` (B, 3, 3)."""

    prediction: torch.Tensor
    warped: torch.Tensor
    flow: torch.Tensor
    occlusion: torch.Tensor
    reference_regions: RegionParams
    driving_regions: RegionParams
    background: torch.Tensor


class LatentFlowAutoencoder(ModelMixin, ConfigMixin):
    """Latent flow autoencoder: estimates latent flows between frames and decodes warped reference features.

    The defaults are the paper's 128 px model (MUG; MHAD and NATOPS differ only in `region_pad=0`); every size
    comes from the arguments, so a small model is the same class with other numbers.

    Args:
        image_size: side of the square input images in pixels.
        num_channels: image channels.
        num_regions: K, the number of motion regions.
        region_block_expansion, region_max_features, region_num_blocks: width multiplier, width cap and depth of
            the region predictor's hourglass.
        region_temperature: softmax temperature of the region heat maps.
        region_scale_factor: the region predictor works on images down-sampled by this factor (1 / integer).
        region_pad: padding of the 7x7 region head; 3 keeps the heat-map size, 0 shrinks it by 6 pixels.
        background_block_expansion, background_max_features, background_num_blocks: the background encoder.
        block_expansion, max_features: width multiplier and cap of the generator's encoder and decoder.
        num_down_blocks: encoder down-samplings; the features are image_size / 2**num_down_blocks wide.
        num_bottleneck_blocks: residual blocks at the bottleneck.
        flow_block_expansion, flow_max_features, flow_num_blocks: the flow predictor's hourglass.
        flow_scale_factor: the flow predictor works at image_size * flow_scale_factor; this is the latent size and
            must equal the feature size.
        revert_axis_swap: undo SVD axis flips between the reference and driving region shapes.
        flow_residual: optional, not in the paper (off for the released checkpoints): a 7x7 head on the flow
            predictor's hourglass adds a free correction to the mixture of region motions, so the flow is not
            limited to K affine motions and the background. Zero-initialised: switched on for a trained model
            (`init_from`), it starts from the same flow.
        framing: how the pictures it was trained on were framed, `lfdm.framing.ModelFraming.to_config()` (aligned
            faces with their target eye points, or the whole picture); the networks do not use it, it travels with
            them so that a photo is framed the same way (`LFDMPipeline.framing`). None: not recorded (a model saved
            before framings were), read as SynthFace's.
    """

    @register_to_config
    def __init__(
        self,
        *,
        image_size: int = 128,
        num_channels: int = 3,
        num_regions: int = 10,
        region_block_expansion: int = 32,
        region_max_features: int = 1024,
        region_num_blocks: int = 5,
        region_temperature: float = 0.1,
        region_scale_factor: float = 0.25,
        region_pad: int = 3,
        background_block_expansion: int = 32,
        background_max_features: int = 1024,
        background_num_blocks: int = 5,
        block_expansion: int = 64,
        max_features: int = 512,
        num_down_blocks: int = 2,
        num_bottleneck_blocks: int = 6,
        flow_block_expansion: int = 64,
        flow_max_features: int = 1024,
        flow_num_blocks: int = 5,
        flow_scale_factor: float = 0.25,
        revert_axis_swap: bool = True,
        flow_residual: bool = False,
        framing: dict | None = None,
    ):
        super().__init__()
        if framing is not None:
            ModelFraming.from_config(framing)  # a framing that cannot be read fails here, not at the first photo
        _check_sizes(
            image_size=image_size,
            region_scale_factor=region_scale_factor,
            region_num_blocks=region_num_blocks,
            background_num_blocks=background_num_blocks,
            num_down_blocks=num_down_blocks,
            flow_scale_factor=flow_scale_factor,
            flow_num_blocks=flow_num_blocks,
        )
        self.region_predictor = RegionPredictor(
            num_regions=num_regions,
            num_channels=num_channels,
            block_expansion=region_block_expansion,
            max_features=region_max_features,
            num_blocks=region_num_blocks,
            temperature=region_temperature,
            scale_factor=region_scale_factor,
            pad=region_pad,
        )
        self.background_predictor = BackgroundMotionPredictor(
            num_channels=num_channels,
            block_expansion=background_block_expansion,
            max_features=background_max_features,
            num_blocks=background_num_blocks,
        )
        self.generator = Generator(
            num_regions=num_regions,
            num_channels=num_channels,
            block_expansion=block_expansion,
            max_features=max_features,
            num_down_blocks=num_down_blocks,
            num_bottleneck_blocks=num_bottleneck_blocks,
            flow_block_expansion=flow_block_expansion,
            flow_max_features=flow_max_features,
            flow_num_blocks=flow_num_blocks,
            flow_scale_factor=flow_scale_factor,
            revert_axis_swap=revert_axis_swap,
            flow_residual=flow_residual,
        )

    @property
    def latent_size(self) -> int:
        """h = w of flows, occlusion maps and image features (32 at the paper's size)."""
        return round(self.config.image_size * self.config.flow_scale_factor)

    @property
    def feature_channels(self) -> int:
        """C of the image features `encode` returns (256 at the paper's size)."""
        return self.generator.feature_channels

    @property
    def flow_predictor(self) -> nn.Module:
        """The pixelwise flow predictor (stored as `generator.pixelwise_flow_predictor`, as in the checkpoints)."""
        return self.generator.pixelwise_flow_predictor

    def encode_pyramid(self, image: torch.Tensor) -> list[torch.Tensor]:
        """image (B, 3, H, W) in [0, 1] -> every encoder output the decoder blends, finest first.

        At the paper's size: [(B, 64, 128, 128), (B, 128, 64, 64), (B, 256, 32, 32)]; the last is `encode(image)`.
        """
        self._check_images(image=image)
        return self.generator.encode_pyramid(image)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [0, 1] -> z_0, the unwarped features (B, C, h, w) (the DM's image condition)."""
        return self.encode_pyramid(image)[-1]

    def estimate_flow(self, reference: torch.Tensor, driving: torch.Tensor) -> FlowEstimate:
        """reference, driving (B, 3, H, W) in [0, 1] -> `FlowEstimate`: the backward flow f (B, h, w, 2) that
        samples the reference to form the driving frame, the occlusion map m (B, 1, h, w), and the regions and
        background motion behind them."""
        self._check_images(reference=reference, driving=driving)
        if reference.shape[0] != driving.shape[0]:
            raise ValueError(
                f"reference and driving need the same batch size; got {reference.shape[0]} and {driving.shape[0]}. "
                "Repeat the reference once per driving frame."
            )
        reference_regions = self.region_predictor(reference)
        driving_regions = self.region_predictor(driving)
        background = self.background_predictor(reference, driving)
        motion = self.flow_predictor(reference, driving_regions, reference_regions, background)
        return FlowEstimate(
            flow=motion.flow,
            occlusion=motion.occlusion,
            reference_regions=reference_regions,
            driving_regions=driving_regions,
            background=background,
        )

    def decode(
        self,
        reference: torch.Tensor,
        flow: torch.Tensor,
        occlusion: torch.Tensor,
        features: list[torch.Tensor] | None = None,
    ) -> DecodeOutput:
        """Decode N = B * k frames of B references, each reference with its k flows.

        reference (B, 3, H, W) in [0, 1]; flow (N, h, w, 2) absolute grid in [-1, 1]; occlusion (N, 1, h, w) in
        [0, 1]; frames grouped (b f), reference outer. `features`: `encode_pyramid(reference)` if already
        computed. The reference is encoded once and its features repeated per frame.
        Returns `DecodeOutput(prediction (N, 3, H, W) in [0, 1], warped (N, 3, H, W))`.
        """
        self._check_images(reference=reference)
        batch, frames = reference.shape[0], flow.shape[0]
        expected = (self.latent_size, self.latent_size)
        if flow.ndim != 4 or flow.shape[-1] != 2 or tuple(flow.shape[1:3]) != expected:
            raise ValueError(f"flow must be (N, {expected[0]}, {expected[1]}, 2); got {tuple(flow.shape)}.")
        if tuple(occlusion.shape) != (frames, 1, *expected):
            raise ValueError(
                f"occlusion must be (N, 1, {expected[0]}, {expected[1]}) with N = {frames} like the flow; got "
                f"{tuple(occlusion.shape)}. Add the channel axis with occlusion.unsqueeze(1)."
            )
        if frames % batch != 0:
            raise ValueError(
                f"the number of flows ({frames}) must be a multiple of the number of references ({batch}): "
                "frames are grouped (b f), k flows per reference."
            )
        if features is not None and features[-1].shape[0] != batch:
            raise ValueError(
                f"`features` belong to {features[-1].shape[0]} images but `reference` has {batch}; pass "
                "encode_pyramid(reference) of the same references."
            )
        pyramid = features if features is not None else self.generator.encode_pyramid(reference)
        # Encode once, repeat per frame: (B, ...) -> (B * k, ...), reference-major like the flows. For one reference
        # the repeat is a view, not a copy (grid_sample reads it as is); channels-last is the faster layout to warp.
        per_reference = frames // batch
        reference = repeat(reference, "b c h w -> (b k) c h w", k=per_reference)
        pyramid = [
            repeat(level.contiguous(memory_format=torch.channels_last), "b c h w -> (b k) c h w", k=per_reference)
            for level in pyramid
        ]
        prediction, warped = self.generator.decode(reference, pyramid, flow, occlusion)
        return DecodeOutput(prediction=prediction, warped=warped)

    def forward(self, reference: torch.Tensor, driving: torch.Tensor, return_dict: bool = True) -> LFAEOutput | tuple:
        """Reconstruct `driving` from `reference`: reference, driving (B, 3, H, W) in [0, 1] -> `LFAEOutput`
        (or its fields as a tuple with `return_dict=False`)."""
        estimate = self.estimate_flow(reference, driving)
        decoded = self.decode(reference, estimate.flow, estimate.occlusion)
        output = LFAEOutput(
            prediction=decoded.prediction,
            warped=decoded.warped,
            flow=estimate.flow,
            occlusion=estimate.occlusion,
            reference_regions=estimate.reference_regions,
            driving_regions=estimate.driving_regions,
            background=estimate.background,
        )
        return output if return_dict else output.to_tuple()

    def _check_images(self, **images: torch.Tensor) -> None:
        size, channels = self.config.image_size, self.config.num_channels
        for name, image in images.items():
            if image.ndim != 4 or image.shape[1] != channels or tuple(image.shape[2:]) != (size, size):
                raise ValueError(
                    f"`{name}` must be (B, {channels}, {size}, {size}) in [0, 1]; got {tuple(image.shape)}. "
                    f"Resize the images to the model's image_size ({size}) first."
                )


def _check_sizes(
    *,
    image_size: int,
    region_scale_factor: float,
    region_num_blocks: int,
    background_num_blocks: int,
    num_down_blocks: int,
    flow_scale_factor: float,
    flow_num_blocks: int,
) -> None:
    """Raise a ValueError naming the argument to change when the sizes do not fit together."""
    region_size = image_size * region_scale_factor
    flow_size = image_size * flow_scale_factor
    feature_size = image_size / 2**num_down_blocks
    problems = []
    if region_size % 2**region_num_blocks:
        problems.append(
            f"the region predictor sees {region_size:g} px, which {region_num_blocks} hourglass blocks cannot halve "
            "evenly; lower region_num_blocks or change region_scale_factor"
        )
    if flow_size % 2**flow_num_blocks:
        problems.append(
            f"the flow predictor works at {flow_size:g} px, which {flow_num_blocks} hourglass blocks cannot halve "
            "evenly; lower flow_num_blocks"
        )
    if image_size < 2**background_num_blocks:
        problems.append(f"{image_size} px cannot be halved {background_num_blocks} times; lower background_num_blocks")
    if flow_size != feature_size:
        problems.append(
            f"the flow is {flow_size:g} px but the image features are {feature_size:g} px; make "
            "flow_scale_factor equal 1 / 2**num_down_blocks"
        )
    if problems:
        raise ValueError("LatentFlowAutoencoder sizes do not fit: " + "; ".join(problems) + ".")
