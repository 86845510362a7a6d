"""The latent flow autoencoder (stage one): one network per file, put together in `model.py`."""

from lfdm.models.lfae.background_motion import BackgroundMotionPredictor
from lfdm.models.lfae.flow_predictor import PixelwiseFlow, PixelwiseFlowPredictor
from lfdm.models.lfae.generator import Generator
from lfdm.models.lfae.model import DecodeOutput, FlowEstimate, LatentFlowAutoencoder, LFAEOutput
from lfdm.models.lfae.region_predictor import RegionParams, RegionPredictor

__all__ = [
    "BackgroundMotionPredictor",
    "DecodeOutput",
    "FlowEstimate",
    "Generator",
    "LFAEOutput",
    "LatentFlowAutoencoder",
    "PixelwiseFlow",
    "PixelwiseFlowPredictor",
    "RegionParams",
    "RegionPredictor",
]
