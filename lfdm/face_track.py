"""Following one face through a video: one smoothed track of its eyes, and crops framed like a model's faces.

    track = track_face(frames)            # frames uint8 (F, H, W, 3) -> FaceTrack, or None when no face is found
    crops = crop_track(frames, track, 64, pipe.framing.target_eyes())   # uint8 (F, 64, 64, 3)

1. **Find** the faces (`lfdm.faces.detect_faces`) in every frame, or in every k-th frame of a long video (at most
   `MAX_SEARCHED_FRAMES` searches: about 0.05-0.1 s each on 2 cores).
2. **Keep one track**: the first face (two eyes found, then the largest) of the first frame that shows a usable
   face, then in each searched frame the face nearest to where the track last was; a face further than half a face
   side away, or more than 1.5x larger or smaller, is another face (or a false one) and that frame counts as lost.
3. **Smooth** the eyes as a similarity transform (eye midpoint x and y, log eye distance, angle) over time with a
   weighted local-linear fit under a Gaussian window of `SMOOTHING_FRAMES` frames, the order-1 Savitzky-Golay
   filter made to take weights and gaps. The detector's jitter (its eyes are off by ~1.4 % of the face, more when
   the eye cascade misses and the eyes are guessed from the box: those count `BOX_EYES_WEIGHT`) averages out, while
   a steady pan or zoom of the camera is followed exactly (a linear fit has no lag on a linear motion, where a
   moving average lags at the ends of the clip). LivePortrait averages its crop boxes over the whole clip: that
   removes the jitter but keeps the camera's motion, which relative animation would then copy onto the picture.
4. **Fill** the lost frames: the same fit, evaluated where no face was found, interpolates from the neighbours;
   before the first and after the last frame with a face, the track holds still.
5. **Register** every frame to the first (`register_to_first`): the detector's boxes and eyes move with the
   expression (raised brows and widened eyes shift the eye cascade's eyes up by ~5 % of the face in a surprise),
   which smoothing cannot tell from the camera's motion. So each frame, cut out around the track with twice the
   face's width of context (hair, ears, collar, background), is matched to the first frame's cut-out: corners
   tracked by pyramidal Lucas-Kanade and one similarity transform fitted by RANSAC, so that the parts that the
   expression moves are outliers and the rigid rest decides; that estimate is then refined to a fraction of a
   pixel by ECC (Evangelidis and Psarakis 2008, `cv2.findTransformECC`, affine) on the cut-out with the whole head
   masked out (`HEAD_MASK`), so that only what moves with the camera (hair's outline, ears, collar, background)
   decides. The corrected eyes are kept as they are (smoothing them would smooth a handheld camera's shake away).
   A frame that does not register (too few matching corners, or a correction beyond what the detector can be off
   by) keeps its detected eyes, at a lower weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from lfdm import faces

MAX_SEARCHED_FRAMES = 64  # a longer video is searched every k-th frame (k = ceil(F / 64))
SMOOTHING_FRAMES = 3.0  # standard deviation of the Gaussian window, frames
# After registration the eyes are off by a fraction of a pixel, and a handheld camera's shake is real motion to
# follow: the window is so narrow that it only fills in frames that did not register (on the example handheld
# clip, a window of 1 / 2 / 4 frames took the correlation with the driving face's motion from 0.40 to 0.34 / 0.20 /
# 0.18; benchmarks/driving_faces.py)
REGISTERED_SMOOTHING_FRAMES = 0.3
BOX_EYES_WEIGHT = 0.25  # weight of eyes guessed from the face box against eyes the eye cascade found
MAX_JUMP = 0.5  # fraction of the face's side the track may move between two searched frames
MAX_SIZE_CHANGE = 1.5  # ratio of face sides between two searched frames
# Registration: the cut-out's side (px) and where the eyes sit in it (fractions of the side): eye distance 0.2 of
# the side, so the cut-out spans about twice the face's width
CONTEXT_SIZE = 192
CONTEXT_EYES = np.array([[0.4, 0.42], [0.6, 0.42]])
MIN_MATCHES = 20  # corners that agree with the fitted transform
# The head in the cut-out, left out of the ECC refinement: an ellipse (centre x, y and half-axes, fractions of the
# side) from the brows' top to below the chin and past both cheeks, 1.75 x 2.25 eye distances. On the example
# handheld clip the correlation with the driving face's motion is 0.36 with corners alone, 0.26 refined on the
# whole cut-out (the expression pulls the fit), 0.37 / 0.46 / 0.52 with half-axes of 1.25 x 1.75 / 1.5 x 2 /
# 1.75 x 2.25 eye distances masked (benchmarks/driving_faces.py)
HEAD_MASK = {"centre": (0.5, 0.55), "axes": (0.35, 0.45)}
ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
MAX_CORRECTION = 0.25  # of the eye distance: a larger correction means a failed match, not a detector error


@dataclass(frozen=True)
class FaceTrack:
    """One face followed through F frames, in the frames' pixels.

    Attributes:
        eyes: float (F, 2, 2) smoothed (x, y) of the image-left eye, then the image-right one, every frame.
        found: bool (F,) True where the tracked face was found (or lies between two searched frames that found it,
            for a video searched every k-th frame); False where the eyes are interpolated.
        side: the face's median side in the frames where it was found, pixels.
    """

    eyes: np.ndarray
    found: np.ndarray
    side: float


def searched_frames(num_frames: int, max_searches: int = MAX_SEARCHED_FRAMES) -> np.ndarray:
    """Indices of the frames to search: every k-th frame, k = ceil(num_frames / max_searches), and the last."""
    step = max(1, math.ceil(num_frames / max_searches))
    return np.unique(np.append(np.arange(0, num_frames, step), num_frames - 1))


def track_face(frames, *, max_searches: int = MAX_SEARCHED_FRAMES) -> FaceTrack | None:
    """frames: a sequence of uint8 (H, W, 3) RGB pictures of one size (an array (F, H, W, 3) or a list) -> the
    smoothed `FaceTrack` of one face, or None when no frame shows a face of at least `faces.MIN_FACE_SIDE` px."""
    searched = searched_frames(len(frames), max_searches)
    detections = {int(index): faces.detect_faces(frames[index]) for index in searched}
    chosen = follow_face(detections)
    if not chosen:
        return None
    times = np.array(sorted(chosen), dtype=float)
    faces_kept = [chosen[int(time)] for time in times]
    weights = np.array([1.0 if face.eyes_found else BOX_EYES_WEIGHT for face in faces_kept])
    parameters = eye_parameters(np.stack([face.eyes for face in faces_kept]))
    smoothed = smooth_track(times, parameters, weights, len(frames))
    found = _found_frames(searched, sorted(chosen), len(frames))
    side = float(np.median([face.side for face in faces_kept]))
    return register_to_first(frames, FaceTrack(eyes=eyes_from_parameters(smoothed), found=found, side=side))


def register_to_first(frames, track: FaceTrack) -> FaceTrack:
    """`track` with every frame's eyes corrected by the rigid motion of its face's surroundings since the first
    frame (module docstring, step 5), then smoothed."""
    cut = lambda index: faces.warp_to_crop(  # noqa: E731
        frames[index], faces.alignment_matrix(track.eyes[index], CONTEXT_SIZE, CONTEXT_EYES), CONTEXT_SIZE
    )
    first = cv2.cvtColor(cut(0), cv2.COLOR_RGB2GRAY)
    corners = cv2.goodFeaturesToTrack(first, maxCorners=300, qualityLevel=0.01, minDistance=4)
    outside_head = _outside_head(CONTEXT_SIZE)
    context_eyes = CONTEXT_EYES * CONTEXT_SIZE - 0.5  # pixels of the cut-out
    eye_distance = np.hypot(*(context_eyes[1] - context_eyes[0]))
    corrected, weights = track.eyes.copy(), np.full(len(frames), BOX_EYES_WEIGHT)
    weights[0] = 1.0
    for index in range(1, len(frames)):
        if corners is None:
            break
        current = cv2.cvtColor(cut(index), cv2.COLOR_RGB2GRAY)
        moved, status, _ = cv2.calcOpticalFlowPyrLK(first, current, corners, None)
        ok = status[:, 0] == 1
        if ok.sum() < MIN_MATCHES:
            continue
        # this cut-out's pixels -> the first cut-out's: where frame 0's content is in this frame
        matrix, inliers = cv2.estimateAffinePartial2D(moved[ok], corners[ok], method=cv2.RANSAC,
                                                      ransacReprojThreshold=1.0)  # fmt: skip
        if matrix is None or inliers.sum() < MIN_MATCHES:
            continue
        back = _refine(first, current, cv2.invertAffineTransform(matrix), outside_head)  # first -> this cut-out
        where = context_eyes @ back[:, :2].T + back[:, 2]
        if np.abs(where - context_eyes).max() > MAX_CORRECTION * eye_distance:
            continue
        to_frame = cv2.invertAffineTransform(faces.alignment_matrix(track.eyes[index], CONTEXT_SIZE, CONTEXT_EYES))
        corrected[index] = where @ to_frame[:, :2].T + to_frame[:, 2]
        weights[index] = 1.0
    times = np.arange(len(frames), dtype=float)
    smoothed = smooth_track(times, eye_parameters(corrected), weights, len(frames), REGISTERED_SMOOTHING_FRAMES)
    return FaceTrack(eyes=eyes_from_parameters(smoothed), found=track.found, side=track.side)


def _outside_head(side: int) -> np.ndarray:
    """uint8 (side, side) mask of a cut-out: 255 outside the head's ellipse (`HEAD_MASK`), 0 inside."""
    mask = np.full((side, side), 255, np.uint8)
    centre = tuple(round(value * side) for value in HEAD_MASK["centre"])
    axes = tuple(round(value * side) for value in HEAD_MASK["axes"])
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 0, thickness=-1)
    return mask


def _refine(first: np.ndarray, current: np.ndarray, matrix: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`matrix` (2, 3): the first cut-out's pixels -> `current`'s, refined by ECC on the pixels of `mask`; the
    matrix as it was when ECC does not converge."""
    try:
        _, refined = cv2.findTransformECC(
            first.astype(np.float32), current.astype(np.float32), matrix.astype(np.float32), cv2.MOTION_AFFINE,
            ECC_CRITERIA, mask, 3,
        )  # fmt: skip
    except cv2.error:  # a flat or vanished surrounding: no gradient to follow
        return matrix
    return refined.astype(np.float64)


def follow_face(detections: dict[int, list[faces.Face]]) -> dict[int, faces.Face]:
    """frame index -> its faces (`detect_faces` order) => frame index -> the one tracked face, for the frames where
    it is found: the first usable face of the first frame that has one, then the nearest face frame after frame."""
    tracked: dict[int, faces.Face] = {}
    last = None
    for index in sorted(detections):
        candidates = [face for face in detections[index] if face.side >= faces.MIN_FACE_SIDE]
        if any(face.eyes_found for face in candidates):  # then the others are most likely not faces
            candidates = [face for face in candidates if face.eyes_found]
        if not candidates:
            continue
        if last is None:
            face = candidates[0]
        else:
            distances = [np.linalg.norm(_centre(candidate) - _centre(last)) for candidate in candidates]
            face = candidates[int(np.argmin(distances))]
            ratio = face.side / last.side
            if min(distances) > MAX_JUMP * last.side or not 1 / MAX_SIZE_CHANGE <= ratio <= MAX_SIZE_CHANGE:
                continue  # another face, or a false one: this frame counts as lost
        tracked[index] = last = face
    return tracked


def _centre(face: faces.Face) -> np.ndarray:
    x0, y0, x1, y1 = face.box
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2])


def _found_frames(searched: np.ndarray, found: list[int], num_frames: int) -> np.ndarray:
    """bool (F,): the searched frames that found the face, and the unsearched frames between two of them."""
    mask = np.zeros(num_frames, bool)
    hit = set(found)
    for before, after in zip(searched[:-1], searched[1:], strict=True):
        if before in hit and after in hit:
            mask[before : after + 1] = True
    mask[list(hit)] = True
    return mask


def eye_parameters(eyes: np.ndarray) -> np.ndarray:
    """eyes (N, 2, 2) -> (N, 4): midpoint x, midpoint y, log eye distance, angle (radians) of the eye line."""
    eyes = np.asarray(eyes, float)
    delta = eyes[:, 1] - eyes[:, 0]
    middle = eyes.mean(1)
    return np.stack(
        [
            middle[:, 0],
            middle[:, 1],
            np.log(np.maximum(np.hypot(*delta.T), 1e-6)),
            np.arctan2(delta[:, 1], delta[:, 0]),
        ],
        axis=1,
    )


def eyes_from_parameters(parameters: np.ndarray) -> np.ndarray:
    """(N, 4) `eye_parameters` -> eyes (N, 2, 2), image-left eye first."""
    middle, distance, angle = parameters[:, :2], np.exp(parameters[:, 2]), parameters[:, 3]
    half = 0.5 * distance[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return np.stack([middle - half, middle + half], axis=1)


def smooth_track(
    times: np.ndarray, values: np.ndarray, weights: np.ndarray, num_frames: int, sigma: float = SMOOTHING_FRAMES
) -> np.ndarray:
    """Samples `values` (N, P) at frame `times` (N,) with `weights` (N,) -> (num_frames, P) smoothed at every frame.

    At each frame t, the weighted least-squares line through the samples, weights w_i exp(-(t_i - t)^2 / 2 sigma^2),
    evaluated at t: a local-linear (order-1 Savitzky-Golay) filter that follows a linear trend without lag and
    interpolates across frames without samples. Outside the sampled span the value at its end is held.
    """
    times, values, weights = np.asarray(times, float), np.asarray(values, float), np.asarray(weights, float)
    frames = np.clip(np.arange(num_frames, dtype=float), times.min(), times.max())  # hold beyond the ends
    offsets = times[None, :] - frames[:, None]  # (T, N)
    log_kernel = -0.5 * (offsets / sigma) ** 2
    # relative to each frame's nearest sample, so that a frame far from every sample does not underflow to 0 / 0
    kernel = weights[None, :] * np.exp(log_kernel - log_kernel.max(axis=1, keepdims=True))
    s0, s1, s2 = kernel.sum(1), (kernel * offsets).sum(1), (kernel * offsets**2).sum(1)
    s2 = s2 + 1e-9 * s0  # a frame that sees one sample gets that sample (no slope to fit)
    t0, t1 = kernel @ values, (kernel * offsets) @ values  # (T, P)
    return (s2[:, None] * t0 - s1[:, None] * t1) / (s0 * s2 - s1**2)[:, None]


def crop_track(frames, track: FaceTrack, size: int, target_eyes: np.ndarray) -> np.ndarray:
    """The frames (F pictures uint8 (H, W, 3)) framed like a model's faces: uint8 (F, size, size, 3), the tracked
    eyes of each frame put on `target_eyes` (fractions of the side, `lfdm.framing.ModelFraming.target_eyes()`)."""
    return np.stack(
        [
            faces.warp_to_crop(frame, faces.alignment_matrix(eyes, size, target_eyes), size)
            for frame, eyes in zip(frames, track.eyes, strict=True)
        ]
    )
