"""The networks of lfdm, as diffusers `ModelMixin`/`ConfigMixin` models."""

from lfdm.models.labels import LabelEncoder
from lfdm.models.lfae import DecodeOutput, FlowEstimate, LatentFlowAutoencoder, LFAEOutput, RegionParams
from lfdm.models.unet3d import FlowUNet3D, UNet3DOutput

__all__ = [
    "DecodeOutput",
    "FlowEstimate",
    "FlowUNet3D",
    "LFAEOutput",
    "LabelEncoder",
    "LatentFlowAutoencoder",
    "RegionParams",
    "UNet3DOutput",
]
