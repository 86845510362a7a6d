"""The networks of lfdm, as diffusers `ModelMixin`/`ConfigMixin` models."""

from lfdm.models.lfae import DecodeOutput, FlowEstimate, LatentFlowAutoencoder, LFAEOutput, RegionParams

__all__ = ["DecodeOutput", "FlowEstimate", "LFAEOutput", "LatentFlowAutoencoder", "RegionParams"]
