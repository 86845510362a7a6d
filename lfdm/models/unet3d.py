"""The space-time U-Net of LFDM's diffusion model: it denoises a sequence of latent flows.

Paper: Ni et al., "Conditional Image-to-Video Generation with Latent Flow Diffusion Models", CVPR 2023, Sec. 3.2.
Notation (variable -> paper):
- `sample` -> z_t, the noisy latent flow sequence (B, 3, F, h, w), channels [flow_x, flow_y, 2*occlusion-1];
- `image_features` -> z_0 = Φ(x_0), the autoencoder's features of the conditioning image, concatenated to z_t at
  every frame;
- `label_embedding` -> e(y), the class condition, joined to the timestep embedding;
- output -> the model output o_θ(z_t, t, z_0, y): the noise ε as in the paper, or the clean sample (the shipped
  model) or v, as the training `prediction_type` says.

Factorised space-time design: per-frame 2D convolutions (kernels (1, k, k)), spatial linear attention per frame,
temporal attention per pixel, full spatial attention in the middle, no temporal down-sampling. Every conditioned
residual block modulates its features (FiLM) with `cat(time embedding, label embedding)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from einops import rearrange
from torch import nn

from lfdm.models.attention import (
    PreNormResidual,
    RelativePositionBias,
    RotaryEmbedding,
    SpatialAttention,
    TemporalAttention,
)
from lfdm.models.unet3d_blocks import (
    Downsample,
    FrameConv3d,
    ResnetBlock,
    TimestepEmbedding,
    UNetLevel,
    Upsample,
    sinusoidal_embedding,
)

UPSAMPLE_MODES = ("deconv", "nearest")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


@dataclass
class UNet3DOutput(BaseOutput):
    """
    Args:
        sample (`torch.Tensor` of shape `(batch, 3, frames, height, width)`): the prediction: the noise ε (the
            paper), or v or the clean sample, as the scheduler's `prediction_type` says.
    """

    sample: torch.Tensor


class FlowUNet3D(ModelMixin, ConfigMixin):
    r"""
    Space-time U-Net that predicts the noise ε in a noisy latent flow sequence (LFDM's diffusion network); trained
    with another `prediction_type`, it predicts v or the clean sequence instead.

    Defaults are the paper's model (42.7 M parameters: 32x32 latents of 40 frames, 256 image-feature channels).

    Args:
        dim: channels of the first level; the time embedding has `4 * dim`.
        dim_mults: channel multiplier per level; `len(dim_mults) - 1` down-samplings of x2.
        sample_channels: channels of the diffused latent (3: flow x, flow y, occlusion); the flow head predicts
            `sample_channels - 1` of them, the occlusion head the last one.
        feature_channels: channels of the image features concatenated to every frame.
        label_dim: width of the label embedding (768 for the BERT embeddings of the released models).
        attn_heads: heads of every attention layer.
        attn_dim_head: per-head width of the temporal attentions (rotary embedding over min(32, this) features).
        spatial_attn_dim_head: per-head width of the spatial (linear and full) attentions.
        init_kernel_size: spatial kernel of the first convolution (odd).
        resnet_groups: GroupNorm groups; every level's channels must divide by it.
        learn_null_label: learn the null label embedding used for classifier-free guidance (else zeros).
        upsample: "deconv" (transposed convolution) or "nearest" (nearest x2 then a 3x3 convolution).
        padding_mode: padding of the convolution after nearest up-sampling ("zeros", "reflect", ...).
        num_frames: default number of frames to generate (the network accepts any number).
        sample_size: default latent height and width to generate (any multiple of 2^(levels-1) works).
        residual_flow: what the flow channels of the sample mean (the network is the same either way): False, the
            absolute sampling grid (the released models); True, its displacement from `lfdm.latents.identity_grid`
            (the authors' `use_residual_flow`). Training targets and the pipeline read it.
        frame_embedding: add a learned per-frame vector (initialised to the sinusoidal position code) to the
            features after the first convolution, so every layer knows the absolute frame index (not in the paper,
            whose temporal layers only see relative positions). The network then makes at most `num_frames` frames.
    """

    @register_to_config
    def __init__(
        self,
        dim: int = 64,
        dim_mults: tuple[int, ...] = (1, 2, 4, 8),
        sample_channels: int = 3,
        feature_channels: int = 256,
        label_dim: int = 768,
        attn_heads: int = 8,
        attn_dim_head: int = 32,
        spatial_attn_dim_head: int = 32,
        init_kernel_size: int = 7,
        resnet_groups: int = 8,
        learn_null_label: bool = False,
        upsample: str = "deconv",
        padding_mode: str = "zeros",
        num_frames: int = 40,
        sample_size: int = 32,
        residual_flow: bool = False,
        frame_embedding: bool = False,
    ):
        super().__init__()
        dims = [dim] + [dim * mult for mult in dim_mults]
        _check_config(dims, sample_channels, init_kernel_size, resnet_groups, upsample, padding_mode)
        condition_dim = 4 * dim + label_dim
        level_args = {
            "groups": resnet_groups,
            "condition_dim": condition_dim,
            "heads": attn_heads,
            "spatial_dim_head": spatial_attn_dim_head,
            "temporal_dim_head": attn_dim_head,
        }

        self.init_conv = FrameConv3d(
            sample_channels + feature_channels, dim, (1, init_kernel_size, init_kernel_size),
            padding=(0, init_kernel_size // 2, init_kernel_size // 2),
        )  # fmt: skip
        if frame_embedding:
            code = sinusoidal_embedding(torch.arange(num_frames), dim)  # (num_frames, dim)
            self.frame_positions = nn.Parameter(rearrange(code, "f c -> 1 c f 1 1").contiguous())
        self.init_temporal_attention = PreNormResidual(dim, TemporalAttention(dim, attn_heads, attn_dim_head))
        self.time_embedding = TimestepEmbedding(dim, 4 * dim)
        self.rotary_embedding = RotaryEmbedding(min(32, attn_dim_head))  # one table shared by all temporal layers
        self.relative_position_bias = RelativePositionBias(attn_heads)

        in_out = list(zip(dims[:-1], dims[1:], strict=False))  # (in, out) channels per level
        lowest = len(in_out) - 1
        self.down_levels = nn.ModuleList(
            UNetLevel(c_in, c_out, Downsample(c_out) if i < lowest else nn.Identity(), **level_args)
            for i, (c_in, c_out) in enumerate(in_out)
        )
        mid = dims[-1]
        self.mid_resnet1 = ResnetBlock(mid, mid, groups=resnet_groups, condition_dim=condition_dim)
        self.mid_spatial_attention = PreNormResidual(mid, SpatialAttention(mid, attn_heads, spatial_attn_dim_head))
        self.mid_temporal_attention = PreNormResidual(mid, TemporalAttention(mid, attn_heads, attn_dim_head))
        self.mid_resnet2 = ResnetBlock(mid, mid, groups=resnet_groups, condition_dim=condition_dim)
        self.up_levels = nn.ModuleList(
            UNetLevel(
                c_out * 2, c_in, Upsample(c_in, upsample, padding_mode) if i < lowest else nn.Identity(), **level_args
            )
            for i, (c_in, c_out) in enumerate(reversed(in_out))
        )
        # Two heads on cat(last features, init_conv output): flow channels and the occlusion channel.
        self.flow_head = nn.Sequential(
            ResnetBlock(dim * 2, dim, groups=resnet_groups), FrameConv3d(dim, sample_channels - 1, 1)
        )
        self.occlusion_head = nn.Sequential(ResnetBlock(dim * 2, dim, groups=resnet_groups), FrameConv3d(dim, 1, 1))

        if learn_null_label:
            self.null_label_embedding = nn.Parameter(torch.randn(1, label_dim))
        else:
            self.register_buffer("null_label_embedding", torch.zeros(1, label_dim), persistent=False)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        image_features: torch.Tensor,
        label_embedding: torch.Tensor | None = None,
        return_dict: bool = True,
        drop_label: torch.Tensor | None = None,
    ) -> UNet3DOutput | tuple[torch.Tensor]:
        """
        Args:
            sample: (B, 3, F, h, w) noisy latents z_t, channels [flow_x, flow_y, 2*occlusion-1].
            timestep: (B,) int64 diffusion steps in [0, num_train_timesteps), or one step for the whole batch.
            image_features: (B, feature_channels, h, w) features of the conditioning image.
            label_embedding: (B, label_dim) label embeddings; None means the null embedding (no label).
            return_dict: return a `UNet3DOutput` (else a 1-tuple).
            drop_label: optional (B,) bool; True replaces that sample's label by the null embedding
                (classifier-free guidance training).

        Returns:
            `UNet3DOutput` with `sample` (B, 3, F, h, w): the model output (see `UNet3DOutput`).
        """
        self._check_inputs(sample, image_features, label_embedding)
        b, _, f, _, _ = sample.shape
        timestep = _batch_timestep(timestep, b, sample.device)
        label = self._label_condition(label_embedding, drop_label, b, sample.dtype)

        x = self.initial_convolution(sample, image_features.to(sample.dtype))
        if self.config.frame_embedding:
            x = x + self.frame_positions[:, :, :f].to(x.dtype)
        init_features = x  # joins the heads at the end, taken before the first temporal attention
        temporal = {"position_bias": self.relative_position_bias(f), "rotary_angles": self.rotary_embedding(f)}
        x = self.init_temporal_attention(x, **temporal)
        condition = torch.cat([self.time_embedding(timestep), label.to(x.dtype)], dim=-1)

        skips = []
        for level in self.down_levels:
            x = level(x, condition, **temporal)
            skips.append(x)
            x = level.resample(x)
        x = self.mid_resnet1(x, condition)
        x = self.mid_spatial_attention(x)
        x = self.mid_temporal_attention(x, **temporal)
        x = self.mid_resnet2(x, condition)
        for level in self.up_levels:
            x = level(torch.cat([x, skips.pop()], dim=1), condition, **temporal)
            x = level.resample(x)

        x = torch.cat([x, init_features], dim=1)
        output = torch.cat([self.flow_head(x), self.occlusion_head(x)], dim=1).contiguous()  # back to (b, c, f, h, w)
        if not return_dict:
            return (output,)
        return UNet3DOutput(sample=output)

    def initial_convolution(self, sample: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        """`init_conv(cat(z_t, z_0 repeated over frames))`: sample (b, 3, f, h, w), image_features (b, C, h, w) ->
        (b, dim, f, h, w), channels-last in memory (the layout every later layer keeps).

        The convolution is linear and per frame, and z_0 is the same at every frame, so it is computed as
        conv_z(z_t) + conv_feature(z_0) with conv_feature run once, not once per frame: at the paper's size 256 of
        the 259 input channels, 64 of the U-Net's 229 GFLOP. Exact up to float rounding.
        """
        conv, sample_channels = self.init_conv, sample.shape[1]
        weight, padding = conv.weight.squeeze(2), conv.padding[1:]
        # (b, c, f, h, w) -> (b*f, c, h, w), channels-last
        frames = rearrange(sample, "b c f h w -> (b f) c h w").contiguous(memory_format=torch.channels_last)
        sample_part = F.conv2d(frames, weight[:, :sample_channels], conv.bias, padding=padding)
        features = image_features.contiguous(memory_format=torch.channels_last)
        feature_part = F.conv2d(features, weight[:, sample_channels:], padding=padding)
        sample_part = rearrange(sample_part, "(b f) c h w -> b c f h w", b=sample.shape[0])
        return sample_part + rearrange(feature_part, "b c h w -> b c 1 h w")  # the same features at every frame

    def _label_condition(
        self, label_embedding: torch.Tensor | None, drop_label: torch.Tensor | None, batch: int, dtype: torch.dtype
    ) -> torch.Tensor:
        null = self.null_label_embedding.to(dtype).expand(batch, -1)
        if label_embedding is None:
            return null
        label_embedding = label_embedding.to(dtype)
        if drop_label is None:
            return label_embedding
        return torch.where(drop_label.to(torch.bool).view(batch, 1), null, label_embedding)

    def _check_inputs(
        self, sample: torch.Tensor, image_features: torch.Tensor, label_embedding: torch.Tensor | None
    ) -> None:
        config = self.config
        if sample.ndim != 5 or sample.shape[1] != config.sample_channels:
            raise ValueError(
                f"`sample` must be (batch, {config.sample_channels}, frames, height, width); got {tuple(sample.shape)}."
            )
        b, _, f, h, w = sample.shape
        if config.frame_embedding and f > config.num_frames:
            raise ValueError(
                f"this U-Net learned frame positions for at most {config.num_frames} frames; got {f}. Generate "
                f"num_frames <= {config.num_frames}."
            )
        factor = 2 ** (len(config.dim_mults) - 1)
        if h % factor or w % factor:
            raise ValueError(
                f"the latent height and width must be multiples of {factor} for {len(config.dim_mults)} levels; "
                f"got {h}x{w}."
            )
        if tuple(image_features.shape) != (b, config.feature_channels, h, w):
            raise ValueError(
                f"`image_features` must be (batch, {config.feature_channels}, height, width) = "
                f"{(b, config.feature_channels, h, w)} for this sample; got {tuple(image_features.shape)}."
            )
        if label_embedding is not None and tuple(label_embedding.shape) != (b, config.label_dim):
            raise ValueError(
                f"`label_embedding` must be (batch, {config.label_dim}) = {(b, config.label_dim)}; got "
                f"{tuple(label_embedding.shape)}. Pass None for the null (unconditional) embedding."
            )


def _batch_timestep(timestep: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
    """An int, a 0-d or (1,) tensor, or a (B,) tensor -> (B,) tensor on `device` (dtype kept, int64 for ints)."""
    timestep = torch.as_tensor(timestep, device=device)
    if timestep.ndim == 0 or timestep.numel() == 1:
        return timestep.reshape(1).expand(batch)
    if timestep.shape != (batch,):
        raise ValueError(f"`timestep` must be one value or (batch,) = ({batch},); got {tuple(timestep.shape)}.")
    return timestep


def _check_config(
    dims: list[int], sample_channels: int, init_kernel_size: int, groups: int, upsample: str, padding_mode: str
) -> None:
    if len(dims) < 2:
        raise ValueError("`dim_mults` needs at least one level, e.g. (1, 2, 4, 8).")
    if any(channels % groups for channels in dims):
        raise ValueError(f"every level's channels {dims[1:]} and `dim` must divide by `resnet_groups`={groups}.")
    if sample_channels < 2:
        raise ValueError(f"`sample_channels` must be >= 2 (flow channels plus occlusion); got {sample_channels}.")
    if init_kernel_size % 2 != 1:
        raise ValueError(f"`init_kernel_size` must be odd; got {init_kernel_size}.")
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"`upsample` must be one of {UPSAMPLE_MODES}; got {upsample!r}.")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"`padding_mode` must be one of {PADDING_MODES}; got {padding_mode!r}.")
