"""SynthFace: procedural facial-expression videos (the MUG label set), rendered on demand.

`render_video(identity_seed, label, take)` draws one video (one of the seven labels, or an extra action such as
"wink"); `SynthFaceDataset` serves clips or frame pairs for training; `split_identities` gives disjoint
train/test identities. `lfdm.data.synthetic` re-exports these names.
"""

from lfdm.data.synthface.dataset import SynthFaceDataset, identity_name, split_identities
from lfdm.data.synthface.expressions import (
    ACTIONS,
    ALL_SYNTHFACE_LABELS,
    SYNTHFACE_EXTRA_LABELS,
    SYNTHFACE_LABELS,
    VideoParams,
    sample_video_params,
)
from lfdm.data.synthface.identity import Identity, sample_identity
from lfdm.data.synthface.render import render_frames, render_video

__all__ = [
    "ACTIONS",
    "ALL_SYNTHFACE_LABELS",
    "SYNTHFACE_EXTRA_LABELS",
    "SYNTHFACE_LABELS",
    "Identity",
    "SynthFaceDataset",
    "VideoParams",
    "identity_name",
    "render_frames",
    "render_video",
    "sample_identity",
    "sample_video_params",
    "split_identities",
]
