"""How a model's pictures were framed: aligned faces (with their target eye points and tolerances) or the whole picture.

A model animates a photo well when the photo is framed the way its training pictures were. That is a fact of the
model, so it is saved with it: `ModelFraming.to_config()` is the `framing` entry of the LFAE's config
(`lfdm.models.lfae.LatentFlowAutoencoder(framing=...)`), and `LFDMPipeline.framing` reads it back.

    framing = pipe.framing                               # ModelFraming(kind="face", eyes=..., eye_range=...)
    frame_photo(photo, pipe.image_size, model_framing=framing)   # lfdm.photo: a face crop, or the whole picture

Why the LFAE's config: the LFAE is the network that sees the pictures, and its config already holds the other
picture fact (`image_size`). As a typed constructor argument it is stored by `register_to_config`, so diffusers'
`save_pretrained` / `from_pretrained` (and a Hub download, which fetches `lfae/config.json`) carry it with no code
of ours, a lone LFAE folder (train-lfae's export, which train-dm builds on) carries it too, and a folder saved
before it existed simply lacks the key: `ModelFraming.from_config(None)` reads such a model as SynthFace-framed,
which every pipeline saved before then was (`checkpoints/` included).

Positions are fractions of the model frame's side (x right, y down, pixel centres at (i + 0.5) / side), so one
framing serves any size. Nothing here renders SynthFace: its numbers are measured once
(`lfdm.data.synthface.framing.measure_framing`) and kept below, checked by a test that measures them again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

FRAMING_KINDS = ("face", "whole")
# What a caller may ask of a photo's framing and rendering (the pipeline's `face` and `max_resolution`), defined here
# once: this module needs only numpy, so the command line's --help and the app's texts read them without torch.
FACE_MODES = ("auto", "none", "require")  # "auto" follows the model's framing; see `lfdm.photo.frame_photo`
# "auto": a face model finds the driving face in every frame and frames it like its faces (`lfdm.driving`);
# "none": the driving frames are used as they are
DRIVING_FACE_MODES = ("auto", "none")
MAX_RESOLUTION = 1024  # pixels: the longest side a photo-size video may have by default (`max_resolution`)
EYE_MEASURES = ("distance", "angle", "x", "y")  # see `eye_measures`


def eye_measures(eyes: np.ndarray) -> dict[str, np.ndarray]:
    """eyes (..., 2, 2) (image-left eye first) -> distance, angle (degrees), midpoint x and y, each (...)."""
    delta = eyes[..., 1, :] - eyes[..., 0, :]
    middle = eyes.mean(-2)
    return {
        "distance": np.hypot(delta[..., 0], delta[..., 1]),
        "angle": np.degrees(np.arctan2(delta[..., 1], delta[..., 0])),
        "x": middle[..., 0],
        "y": middle[..., 1],
    }


@dataclass(frozen=True)
class ModelFraming:
    """How the pictures a model was trained on were framed.

    Attributes:
        kind: "face": aligned faces, a photo's face is found and aligned to `eyes`; "whole": the whole picture,
            resized with its aspect kept and padded to a square, with no face search.
        eyes: ((x, y) of the image-left eye, (x, y) of the image-right eye), fractions of the frame's side: where
            an aligned face's eyes are put. None for "whole".
        eye_range: {"distance", "angle", "x", "y"} -> (min, max): the eye framings the model was trained on
            (distance between the eyes and midpoint x, y as fractions of the side; angle of the line through them
            in degrees). A photo whose face already lies in this range is animated in place, without re-sampling.
            None for "whole".
    """

    kind: str
    eyes: tuple[tuple[float, float], tuple[float, float]] | None = None
    eye_range: Mapping[str, tuple[float, float]] | None = None

    def __post_init__(self) -> None:
        if self.kind not in FRAMING_KINDS:
            raise ValueError(f"a model's framing `kind` must be one of {FRAMING_KINDS}; got {self.kind!r}.")
        if self.kind == "whole":
            if self.eyes is not None or self.eye_range is not None:
                raise ValueError("a whole-picture framing has no `eyes` or `eye_range`; leave them out.")
            return
        eyes = np.asarray(self.eyes, float) if self.eyes is not None else None
        if eyes is None or eyes.shape != (2, 2) or not np.isfinite(eyes).all():
            raise ValueError(
                f"a face framing needs `eyes` [[x, y], [x, y]] (fractions of the side); got {self.eyes!r}."
            )
        ranges = dict(self.eye_range or {})
        if sorted(ranges) != sorted(EYE_MEASURES) or any(len(ranges[name]) != 2 for name in ranges):
            raise ValueError(
                f"a face framing needs `eye_range` with (min, max) for each of {EYE_MEASURES}; got {self.eye_range!r}."
            )
        # plain tuples, so that the framing compares, prints and saves the same however it was given
        object.__setattr__(self, "eyes", tuple((float(x), float(y)) for x, y in eyes.tolist()))
        ranges = {name: (float(ranges[name][0]), float(ranges[name][1])) for name in EYE_MEASURES}
        object.__setattr__(self, "eye_range", ranges)

    @property
    def is_face(self) -> bool:
        """True when the model animates aligned faces (a photo's face is searched for)."""
        return self.kind == "face"

    def target_eyes(self) -> np.ndarray:
        """float (2, 2): `eyes` as an array (image-left eye first), fractions of the side."""
        if self.eyes is None:
            raise ValueError("a whole-picture framing has no eye targets.")
        return np.array(self.eyes, dtype=float)

    def to_config(self) -> dict:
        """The JSON-ready dict saved in the LFAE's config (`framing`)."""
        if not self.is_face:
            return {"kind": self.kind}
        return {
            "kind": self.kind,
            "eyes": [list(point) for point in self.eyes],
            "eye_range": {name: list(self.eye_range[name]) for name in EYE_MEASURES},
        }

    @classmethod
    def from_config(cls, config: Mapping | ModelFraming | None) -> ModelFraming:
        """A saved framing dict (`to_config`); None (a model saved before framings were recorded) is SynthFace's."""
        if config is None:
            return SYNTHFACE_FRAMING
        if isinstance(config, ModelFraming):
            return config
        unknown = sorted(set(config) - {"kind", "eyes", "eye_range"})
        if unknown or "kind" not in config:
            raise ValueError(
                f"a saved framing holds `kind` and, for faces, `eyes` and `eye_range`; got keys {sorted(config)}."
            )
        return cls(kind=config["kind"], eyes=config.get("eyes"), eye_range=config.get("eye_range"))


WHOLE_PICTURE = ModelFraming("whole")

# SynthFace's framing, measured by `lfdm.data.synthface.framing.measure_framing()` over 512 identities at rest
# (tests/test_framing.py measures it again): the mean eye centres, and the range of eye distance, angle and midpoint.
# Pipelines saved without a framing are read as this; the numbers are kept exactly (float repr), so those
# pipelines frame photos bit for bit as they did when the framing was measured at run time.
SYNTHFACE_FRAMING = ModelFraming(
    kind="face",
    eyes=((0.3826355497265935, 0.47875493102338623), (0.620511589859557, 0.47878128246684337)),
    eye_range={
        "distance": (0.20515496984691903, 0.27135506275912513),
        "angle": (-5.951587860705396, 5.9923185276672255),
        "x": (0.4404879088601259, 0.5631774871531251),
        "y": (0.4448170745647547, 0.5135090556528535),
    },
)

# MUG, approximately. The authors' MUG clips are face crops: the frontal-face detector's box around each face,
# resized to a square (the MoCoGAN-style preprocessing of MUG). In such a box the eye centres sit at about 0.30 and
# 0.70 across and 0.39 down (`lfdm.faces._BOX_EYES`, measured on the SynthFace examples and the astronaut portrait:
# 0.26-0.34 / 0.66-0.73 across, 0.36-0.40 down); the range allows for that spread and a few degrees of head tilt.
# Not measured on MUG itself (its licence keeps its frames out of this repository): approximate numbers.
MUG_FRAMING = ModelFraming(
    kind="face",
    eyes=((0.3, 0.39), (0.7, 0.39)),
    eye_range={"distance": (0.32, 0.47), "angle": (-6.0, 6.0), "x": (0.46, 0.54), "y": (0.35, 0.43)},
)

# The authors' data sets by name: MUG is face-aligned like its crops; MHAD and NATOPS show whole bodies, framed whole.
DATASET_FRAMINGS = {"mug": MUG_FRAMING, "mhad": WHOLE_PICTURE, "natops": WHOLE_PICTURE}
