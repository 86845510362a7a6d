"""Motion transfer: animate a picture with the motion of a driving video, through the LFAE (no diffusion).

The LFAE is a motion-transfer model (MRAA): `estimate_flow(reference, driving)` finds K regions in each frame and
turns their motion into a latent flow and occlusion map. Two ways to carry a driving video over to a picture:

- relative (default): the motion of driving frame t with respect to driving frame 0 moves the picture's OWN
  regions (MRAA's relative animation): region k of the picture is shifted by the driving region's shift since
  frame 0 and deformed by its affine change since frame 0, `A_t A_0^-1`; the background moves by the driving
  video's background motion since frame 0. Another face keeps its shape, and frame 0 is the picture itself.
- absolute: the flow that turns the picture into driving frame t, region for region (`estimate_flow(picture,
  frame_t)`): the picture takes the driving face's shape and position; right when the two are the same face.

Videos are read frame by frame and each frame is resized to the model's size as it is read, so a long or large
video never sits in memory whole; at most `max_frames` frames are used. A copy of each frame at up to
`DRIVING_SOURCE_SIDE` px is kept too: a face model finds the driving face in it and frames it like its training
faces in every frame (`frame_driving_faces`, `lfdm.face_track`), so that the motion it carries is the face's, not
the camera's.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from lfdm import faces
from lfdm.data.transforms import resize_and_pad
from lfdm.face_track import crop_track, track_face
from lfdm.framing import ModelFraming
from lfdm.images import check_image_size, load_image, to_rgb_uint8
from lfdm.models.lfae.region_predictor import RegionParams
from lfdm.photo import letterbox_matrix
from lfdm.video import iter_video_frames, probe_video

logger = logging.getLogger(__name__)

MAX_DRIVING_FRAMES = 256  # frames used from a driving video; longer videos are cut (64 px: ~0.05 s and ~0.2 MB each)
# Long side of the copy of each driving frame that the face is found and framed in (at least twice the model's
# size): the face search works at most at 400 px anyway (`lfdm.faces.DETECTION_SIDE`), and 320 px keep a face of a
# third of the frame at over 100 px; 256 frames of 320 x 180 are 44 MB.
DRIVING_SOURCE_SIDE = 320


@dataclass(frozen=True)
class DrivingVideo:
    """The frames of a driving video at the model's size.

    Attributes:
        frames: (F, 3, S, S) float32 in [0, 1], F <= max_frames.
        fps: frames per second of the source, 0.0 when it does not say (a folder of frames, an array).
        total_frames: frames in the source (at least F; for a cut video, as many as the file says it has).
        source: uint8 (F, H, W, 3) the frames at their own aspect, long side at most `DRIVING_SOURCE_SIDE` (or twice
            the model's size), where the driving face is found; None: find it in `frames`.
    """

    frames: torch.Tensor
    fps: float
    total_frames: int
    source: np.ndarray | None = None

    @property
    def truncated(self) -> bool:
        return self.total_frames > self.frames.shape[0]


def load_driving_video(video, size: int, *, max_frames: int = MAX_DRIVING_FRAMES) -> DrivingVideo:
    """A driving video -> `DrivingVideo` with every frame resized and padded to (3, size, size) like the picture.

    `video`: a video file or folder of frames (anything `lfdm.video` reads: mp4, GIF, ...), a uint8 / float array
    (F, H, W, 3), a tensor (F, 3, H, W) in [0, 1], or a list of images. Raises ValueError (FileNotFoundError for
    a missing path) for fewer than 2 frames, an unreadable file, or frames too small or too large.
    """
    if isinstance(video, DrivingVideo):
        return video
    if max_frames < 2:
        raise ValueError(f"`max_frames` must be at least 2; got {max_frames}.")
    fps, total = 0.0, None
    if video is None:
        raise ValueError("no driving video: pass a video file (mp4, GIF, ...), a folder of frames or an array.")
    if isinstance(video, (str, os.PathLike)):
        path = Path(video)
        if not path.exists():
            raise FileNotFoundError(f"no driving video at {str(path)!r}; pass an mp4, GIF or a folder of frames.")
        info = probe_video(path)
        fps, total = info.fps, info.num_frames or None
        frames = iter_video_frames(path)
    elif isinstance(video, torch.Tensor):
        if video.ndim != 4:
            raise ValueError(f"a driving video tensor must be (F, 3, H, W) in [0, 1]; got {tuple(video.shape)}.")
        frames = iter(video)
    elif isinstance(video, np.ndarray):
        if video.ndim != 4:
            raise ValueError(f"a driving video array must be (F, H, W, 3); got shape {video.shape}.")
        frames = iter(video)
    else:
        frames = iter(video)
    kept, sources, read = [], [], 0
    source_side = max(DRIVING_SOURCE_SIDE, 2 * size)
    for frame in frames:
        read += 1
        if read > max_frames:
            break  # one frame past the cap: enough to know the video is longer
        rgb = to_rgb_uint8(load_image(frame) if isinstance(frame, (str, os.PathLike)) else frame)
        check_image_size(*rgb.shape[:2])
        # (3, size, size) in [0, 1]: what `lfdm.images.preprocess_image` makes of the frame
        kept.append(torch.from_numpy(np.ascontiguousarray(resize_and_pad(rgb, size))).permute(2, 0, 1).float() / 255)
        sources.append(_shrunk(rgb, source_side))
    if read < 2:
        raise ValueError(
            f"the driving video has {read} frame{'s' if read != 1 else ''}; it needs at least 2 (frame 0 is the "
            "pose the motion starts from)."
        )
    total = max(total or 0, read)
    if total > len(kept):
        logger.warning("the driving video has %d frames; using the first %d", total, len(kept))
    # frames of different sizes (a folder of odd pictures) keep no source: their face is searched at the model's size
    source = np.stack(sources) if len({frame.shape for frame in sources}) == 1 else None
    return DrivingVideo(frames=torch.stack(kept), fps=fps, total_frames=total, source=source)


def _shrunk(rgb: np.ndarray, side: int) -> np.ndarray:
    """uint8 (H, W, 3) with its long side at most `side` (area-averaged, so that it does not alias)."""
    scale = side / max(rgb.shape[:2])
    if scale >= 1:
        return rgb
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class DrivingFaces:
    """The driving frames framed like a face model's training faces (`frame_driving_faces`).

    Attributes:
        frames: (F, 3, S, S) float32 in [0, 1], the frames the motion is estimated on.
        found: bool (F,) True where the driving face was found; elsewhere its place is filled in from the
            neighbouring frames.
        aligned: True when the frames are face crops; False when the face already sits where the model's training
            faces have theirs (over the clip), and the frames are used as they are (re-sampling would only blur).
        note: what the search found, for the person.
    """

    frames: torch.Tensor
    found: np.ndarray
    aligned: bool
    note: str


def frame_driving_faces(video: DrivingVideo, size: int, model_framing: ModelFraming) -> DrivingFaces:
    """Find the driving face in every frame of `video`, follow it (`lfdm.face_track`) and frame every frame like
    `model_framing`'s faces at `size` px. Raises ValueError when no frame shows a face."""
    if not model_framing.is_face:
        raise ValueError("this model animates whole pictures (its framing is 'whole'); it aligns no driving faces.")
    source = video.source
    if source is None:  # frames given at the model's size only: search them
        source = (video.frames.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    count = len(source)
    track = track_face(source)
    if track is None:
        raise ValueError(
            f"no face was found in any of the {count} driving frames (a face needs at least {faces.MIN_FACE_SIDE} px; "
            "drawn and cartoon faces are rarely found). Use a clip that shows a face, or pass "
            "driving_face='none' (--driving-face none) to use the frames as they are, framed like the model's "
            "training faces."
        )
    found = int(track.found.sum())
    filled = "" if found == count else "; the others are filled in from their neighbours"
    note = f"The driving face was found in {found} of {count} frames{filled}."
    letterbox = letterbox_matrix(*source.shape[1:3], size)
    in_model_frame = track.eyes @ letterbox[:, :2].T + letterbox[:, 2]  # (F, 2, 2) model-frame pixels
    # the clip's typical framing (the median over its frames): the face cascade's eyes are off by a few degrees
    # and pixels in single frames, which must not send a clip framed like the model's faces through a re-sampling
    if faces.framed_like_training(np.median(in_model_frame, axis=0), size, model_framing.eye_range):
        return DrivingFaces(video.frames, track.found, False, note + " It is framed like the model's faces already.")
    crops = crop_track(source, track, size, model_framing.target_eyes())
    frames = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255  # (F, S, S, 3) -> (F, 3, S, S)
    return DrivingFaces(frames, track.found, True, note)


def _aligned_affine(affine: torch.Tensor, u: torch.Tensor, reference_u: torch.Tensor) -> torch.Tensor:
    """Flip the columns of `affine` = U D whose singular vectors point the other way from the reference frame's:
    the SVD is free to return either sign, which would turn a still region into a half turn."""
    signs = torch.sign((u * reference_u).sum(dim=-2, keepdim=True))  # (B, K, 1, 2): column-wise dot products
    return affine * torch.where(signs == 0, torch.ones_like(signs), signs)


def relative_regions(picture: RegionParams, driving: RegionParams, start: RegionParams) -> RegionParams:
    """The picture's regions moved as the driving regions moved since the driving video's frame 0.

    shift = mu_picture + (mu_t - mu_0); affine = (A_t A_0^-1) A_picture; covariance = affine affine^T. All (B, K,
    ...) as in `RegionParams`; the picture's and start's batch of 1 broadcasts over the B driving frames.
    """
    dtype = driving.shift.dtype
    # coordinates in at least float32 (as the LFAE computes them): a half-precision 2x2 inverse is not available
    exact = torch.promote_types(dtype, torch.float32)
    picture, driving, start = picture.to(exact), driving.to(exact), start.to(exact)
    driving_affine = _aligned_affine(driving.affine, driving.u, start.u)
    change = torch.matmul(driving_affine, torch.inverse(start.affine))
    affine = torch.matmul(change, picture.affine)
    moved = RegionParams(
        shift=picture.shift + driving.shift - start.shift,
        covar=torch.matmul(affine, affine.transpose(-1, -2)),
        affine=affine,
        heatmap=driving.heatmap,
        u=driving.u,
        d=driving.d,
    )
    return moved.to(dtype)


def _repeat(regions: RegionParams, count: int) -> RegionParams:
    """Regions of one image (batch 1) repeated for `count` frames."""
    return RegionParams(**{name: tensor.expand(count, *tensor.shape[1:]) for name, tensor in regions.items()})


@torch.no_grad()
def estimate_driving_flows(
    lfae, picture: torch.Tensor, frames: torch.Tensor, *, relative: bool = True, chunk_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """picture (1, 3, S, S) and driving frames (F, 3, S, S) in [0, 1] -> flows (1, F, h, w, 2) absolute sampling
    grids that animate the picture, occlusions (1, F, h, w) in [0, 1]. Frames go through the LFAE `chunk_size` at
    a time."""
    flows, occlusions = [], []
    if frames.shape[0] < 1:
        raise ValueError("no driving frames to estimate motion from.")
    if relative:
        picture_regions = lfae.region_predictor(picture)
        start_frame = frames[:1]
        start_regions = lfae.region_predictor(start_frame)
    for begin in range(0, frames.shape[0], chunk_size):
        chunk = frames[begin : begin + chunk_size]
        references = picture.expand(chunk.shape[0], -1, -1, -1)
        if relative:
            chunk_regions = lfae.region_predictor(chunk)
            moved = relative_regions(picture_regions, chunk_regions, start_regions)
            background = lfae.background_predictor(start_frame.expand_as(chunk), chunk)
            motion = lfae.flow_predictor(references, moved, _repeat(picture_regions, chunk.shape[0]), background)
            flows.append(motion.flow)
            occlusions.append(motion.occlusion[:, 0])
        else:
            estimate = lfae.estimate_flow(references, chunk)
            flows.append(estimate.flow)
            occlusions.append(estimate.occlusion[:, 0])
    return torch.cat(flows)[None], torch.cat(occlusions)[None]


DRIVING_LABEL = "driving video"  # what `LFDMPipelineOutput.labels` holds for an animated picture
