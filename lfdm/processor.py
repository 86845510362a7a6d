"""`LFDMProcessor`: picture in and video out for `LFDMPipeline`, as diffusers' `VideoProcessor` is for its pipelines.

The pipeline owns one (`pipe.processor`), made from its image size and framing (both in the LFAE's config); it is
not a saved component. Its four steps, in the order a call makes them:

    framing, pixels = pipe.processor.preprocess(image, face="auto")     # read, frame: (1, 3, S, S) in [0, 1]
    frames, faces = pipe.processor.frame_driving(video)                # `animate`: driving frames (F, 3, S, S)
    # ... the pipeline samples or estimates flows and decodes them at the model's size ...
    video = pipe.processor.render(framing, flows, occlusions, model_frames, resolution="input")
    video = pipe.processor.postprocess(video, "np")                    # numpy or torch

The work itself stays where it was: `lfdm.photo` frames a photo and renders at its size, `lfdm.driving` reads a
driving video and frames its face; both are tensor-in, tensor-out and know nothing of the pipeline. The processor
holds the model's facts they need (its size and framing), so the pipeline passes none of them around.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange

from lfdm.driving import MAX_DRIVING_FRAMES, DrivingFaces, frame_driving_faces, load_driving_video
from lfdm.framing import DRIVING_FACE_MODES, MAX_RESOLUTION, ModelFraming
from lfdm.photo import Framing, check_photo_options, frame_photo, output_size, render_photo_video

OUTPUT_TYPES = ("np", "pt")  # numpy float32 arrays, or CPU tensors


class LFDMProcessor:
    """Frames pictures and driving videos the way the model's training pictures were, and renders its output.

    Args:
        image_size: side of the model's square frames, pixels (the LFAE's `image_size`).
        framing: how the model's training pictures were framed (`LFDMPipeline.framing`).
    """

    def __init__(self, image_size: int, framing: ModelFraming):
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
            raise ValueError(f"`image_size` must be a positive whole number of pixels; got {image_size!r}.")
        self.image_size = int(image_size)
        self.framing = ModelFraming.from_config(framing)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_size={self.image_size}, framing={self.framing.kind!r})"

    def check_inputs(
        self,
        *,
        face: str,
        resolution: int | str | None,
        max_resolution: int,
        output_type: str,
        driving_face: str | None = None,
    ) -> None:
        """ValueError for a picture-in or video-out option that cannot work (`LFDMPipeline.check_inputs` calls it
        once, first). `driving_face` None: not asked (`__call__` has no driving video)."""
        _check_output_type(output_type)
        check_photo_options(face, resolution, max_resolution)
        if driving_face is not None and driving_face not in DRIVING_FACE_MODES:
            raise ValueError(f"`driving_face` must be one of {DRIVING_FACE_MODES}; got {driving_face!r}.")

    def preprocess(self, image, *, face: str = "auto") -> tuple[Framing, torch.Tensor]:
        """Read `image` and frame it like the model's pictures (`lfdm.photo.frame_photo`).

        `image`: a file path, PIL image, numpy array or tensor (`lfdm.images`). `face`: "auto" follows the
        model's framing, "none" is the whole picture, "require" raises ValueError without a usable face.
        Returns the `Framing` (the photo, its face and its transform to the model's frame, for `render`) and the
        model's input (1, 3, S, S) float32 in [0, 1] on the CPU.
        """
        framing = frame_photo(image, self.image_size, model_framing=self.framing, face=face)
        return framing, framing.model_tensor()

    def frame_driving(
        self, video, *, driving_face: str = "auto", max_frames: int = MAX_DRIVING_FRAMES
    ) -> tuple[torch.Tensor, DrivingFaces | None]:
        """Read a driving video (anything `lfdm.driving.load_driving_video` takes) at the model's size and, with
        `driving_face="auto"` on a face model, frame its face in every frame like the model's faces
        (`lfdm.driving.frame_driving_faces`; ValueError when no frame shows a face).

        Returns the frames to estimate motion on, (F, 3, S, S) float32 in [0, 1] on the CPU, and the face track
        (`DrivingFaces`: where the face was found, and a note), or None when the frames are used as they are
        (`driving_face="none"`, or a whole-picture model).
        """
        driving = load_driving_video(video, self.image_size, max_frames=max_frames)
        if driving_face != "auto" or not self.framing.is_face:
            return driving.frames, None
        faces = frame_driving_faces(driving, self.image_size, self.framing)
        return faces.frames, faces

    def video_size(
        self, framing: Framing, resolution: int | str, max_resolution: int = MAX_RESOLUTION
    ) -> tuple[int, int]:
        """(height, width) of a video of `framing`'s photo at `resolution` ("input" or a long side in pixels)."""
        return output_size(*framing.photo.shape[:2], resolution, max_resolution)

    def render(
        self,
        framing: Framing,
        flows: torch.Tensor,
        occlusions: torch.Tensor,
        model_frames: torch.Tensor,
        *,
        resolution: int | str | None = None,
        max_resolution: int = MAX_RESOLUTION,
        refiner=None,
    ) -> torch.Tensor:
        """The video of `framing`'s photo at `resolution` (`lfdm.photo.render_photo_video`).

        flows (B, F, h, w, 2) absolute sampling grids in [-1, 1], x first; occlusions (B, F, h, w) in [0, 1];
        model_frames (B, F, S, S, 3) in [0, 1], the decoder's frames of the model's input. `resolution`: None
        returns `model_frames` themselves; "input" the photo's size; a number the long side, at most
        `max_resolution`. `refiner`: the pipeline's optional `PhotoRefiner`, which paints new content.
        Returns (B, F, H, W, 3) float32 in [0, 1] on the CPU, at the photo's aspect.
        """
        if resolution is None:
            return model_frames
        # b f H W c -> b f c H W and back: the layout of the decoder's frames
        rendered = render_photo_video(
            framing,
            flows,
            occlusions,
            rearrange(model_frames, "b f h w c -> b f c h w"),
            self.video_size(framing, resolution, max_resolution),
            refiner=refiner,
        )
        return rearrange(rendered, "b f c h w -> b f h w c").clamp(0, 1)

    @staticmethod
    def postprocess(value, output_type: str = "np"):
        """A CPU tensor as `output_type` says: "np" a numpy array, "pt" the tensor itself. Anything that is not a
        tensor (None, a list of labels, an array) comes back unchanged, so that every field of an output can go
        through."""
        _check_output_type(output_type)
        if output_type == "np" and isinstance(value, torch.Tensor):
            return value.numpy()
        return value


def _check_output_type(output_type: str) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"`output_type` must be {' or '.join(map(repr, OUTPUT_TYPES))}; got {output_type!r}.")
