"""Finding the face in a photograph, and the similarity transform that frames it the way a model's faces were framed.

    faces = detect_faces(rgb)                      # largest first; each with a box and two eye centres
    matrix = alignment_matrix(faces[0].eyes, 64, pipe.framing.target_eyes())  # (2, 3): photo px -> 64 px crop px
    crop = warp_to_crop(rgb, matrix, 64)           # uint8 (64, 64, 3), eyes where the model's training faces had them

Pixel coordinates put pixel centres on integers (x right, y down), as OpenCV's `warpAffine` does.

**Why this detector.** OpenCV's Haar cascades (Viola and Jones 2001): the frontal-face cascade and the eye cascade
ship inside the `opencv-python-headless` 4.x wheel that `requirements.txt` already pins (`cv2.data`; OpenCV's
licence), so the app finds faces offline with nothing to download and no new dependency. At scale factor 1.1 and
5 neighbours the face cascade finds the NASA astronaut portrait's face within a few pixels of its centre in the
full, mirrored, 12-degree rotated, grayscale, small-JPEG and larger-canvas versions, finds the SynthFace example
faces, and nothing on photos without a face (scikit-image's coffee cup and cat), in about 0.1 s at the 400 px it
searches a 512 px photo at. The alternatives carry better models but cannot be installed beside this project's
pins: `mediapipe` 0.10.21 (face mesh) requires numpy < 2 and `facenet-pytorch` (MTCNN, 5 landmarks) requires
torch < 2.3.
The cascade finds upright faces (about +-15 degrees), so a picture where no face with two eyes is found upright
is searched again turned by +-25 and +-50 degrees (a face found there counts only when the eye cascade finds both
its eyes: turned pictures give many more false faces); the eyes give the exact angle. Cartoon and drawn faces are
mostly not found: the caller falls back to the whole picture.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from lfdm.framing import eye_measures

FACE_SCALE_FACTOR = 1.1  # image pyramid step of the face search
FACE_MIN_NEIGHBOURS = 5  # overlapping detections needed to accept a face (fewer: more false faces)
EYE_MIN_NEIGHBOURS = 3
MIN_FACE_SIDE = 32  # pixels of the photo; a smaller face has too few pixels to animate
# The photo is searched at most this large (long side): about 0.1 s on 2 cores. The cascade's smallest window is
# 24 px, so a 512 px photo still shows its 31 px faces; in a photo of 1024 px faces from about 62 px are found.
DETECTION_SIDE = 400
ROTATIONS = (0.0, -25.0, 25.0, -50.0, 50.0)  # degrees; tried in order until a face is found
_EYE_SEARCH_WIDTH = 200  # the face box is enlarged to this width before the eye search
# Where the eye centres sit in a frontal-face cascade box when the eye cascade finds no pair (measured on the
# SynthFace examples and the astronaut portrait: 0.26-0.34 / 0.66-0.73 across, 0.36-0.40 down).
_BOX_EYES = np.array([[0.3, 0.39], [0.7, 0.39]])
# How far the eye cascade's eyes may be from the true ones (fractions of the side, degrees): on 88 SynthFace frames
# at 64 and 128 px the error is 1.4 % of the side (median), 2 % (90th percentile), 5.4 % at most (behind glasses).
EYE_TOLERANCE = {"distance": 0.03, "angle": 3.0, "x": 0.03, "y": 0.03}


@dataclass(frozen=True)
class Face:
    """One detected face, in the photo's pixels.

    Attributes:
        box: (x0, y0, x1, y1) the axis-aligned box around the detection.
        side: side of the detector's square, pixels (the face's size).
        eyes: float (2, 2) (x, y) of the image-left eye centre, then the image-right one.
        eyes_found: True when the eye cascade found both eyes; False when they are estimated from the box.
    """

    box: tuple[float, float, float, float]
    side: float
    eyes: np.ndarray
    eyes_found: bool


_THREAD_CASCADES = threading.local()


def _cascade(name: str) -> cv2.CascadeClassifier:
    """OpenCV's cascade `name`, one per thread: a `CascadeClassifier` keeps per-call scratch data, and two threads
    searching with one at once fail inside OpenCV (`getScaleData` assertion), as two app requests or pipelines on
    two threads would."""
    cascades = _THREAD_CASCADES.__dict__.setdefault("by_name", {})
    if name not in cascades:
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
        if cascade.empty():
            raise RuntimeError(f"OpenCV's {name} is missing; reinstall opencv-python-headless 4.x (requirements.txt).")
        cascades[name] = cascade
    return cascades[name]


def detect_faces(image: np.ndarray) -> list[Face]:
    """All faces in a uint8 (H, W, 3) RGB or (H, W) gray picture, the one to animate first; [] when there is none.

    Order: faces whose two eyes the eye cascade found before the others (a face-like patch of clothing rarely has
    two eyes), then larger first. Faces smaller than `MIN_FACE_SIDE` are returned too, so that the caller can say
    why it will not use them.
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    scale = min(1.0, DETECTION_SIDE / max(gray.shape))
    small = gray if scale == 1 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    upright: list[Face] = []
    for angle in ROTATIONS:
        faces = _detect_turned(small, angle, scale)
        if angle == 0:
            upright = faces
        else:  # a turned picture shows the cascade many more face-like patches: keep those with two eyes
            faces = [face for face in faces if face.eyes_found]
        if any(face.eyes_found for face in faces):
            return _ordered(faces)
    return _ordered(upright)  # upright faces whose eyes were not found, if any


def _ordered(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda face: (not face.eyes_found, -face.side))


def _detect_turned(gray: np.ndarray, angle: float, scale: float) -> list[Face]:
    """Faces of `gray` turned by `angle` degrees (counter-clockwise), in the coordinates of the original photo."""
    height, width = gray.shape
    if angle == 0:
        turn = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        turned = gray
    else:  # turn about the centre onto a canvas that holds all of it
        turn = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        cos, sin = abs(turn[0, 0]), abs(turn[0, 1])
        new_width, new_height = int(height * sin + width * cos), int(height * cos + width * sin)
        turn[:, 2] += (new_width - width) / 2, (new_height - height) / 2
        turned = cv2.warpAffine(gray, turn, (new_width, new_height), flags=cv2.INTER_LINEAR)
    boxes = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
        turned, scaleFactor=FACE_SCALE_FACTOR, minNeighbors=FACE_MIN_NEIGHBOURS, minSize=(24, 24)
    )
    back = cv2.invertAffineTransform(turn)  # turned pixels -> small pixels
    to_photo = lambda points: (points @ back[:, :2].T + back[:, 2] + 0.5) / scale - 0.5
    faces = []
    for x, y, w, h in np.asarray(boxes).reshape(-1, 4).astype(float):
        eyes, found = _find_eyes(turned, (x, y, w, h))
        corners = to_photo(np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]]) - 0.5) + 0.5  # box edges
        box = (*corners.min(0).tolist(), *corners.max(0).tolist())
        faces.append(Face(box=tuple(box), side=w / scale, eyes=to_photo(eyes), eyes_found=found))
    return faces


def _find_eyes(gray: np.ndarray, box) -> tuple[np.ndarray, bool]:
    """The two eye centres (2, 2) in `gray`'s pixels inside a face box (x, y, w, h), left first, and whether the
    eye cascade found them (else they are the box's usual eye positions)."""
    x, y, w, h = box
    x0, y0 = int(x), int(y)
    roi = gray[y0 : y0 + int(0.65 * h), x0 : x0 + int(w)]
    zoom = _EYE_SEARCH_WIDTH / max(roi.shape[1], 1)
    interpolation = cv2.INTER_AREA if zoom < 1 else cv2.INTER_CUBIC
    roi = cv2.resize(roi, None, fx=zoom, fy=zoom, interpolation=interpolation)
    found = _cascade("haarcascade_eye.xml").detectMultiScale(
        roi, scaleFactor=FACE_SCALE_FACTOR, minNeighbors=EYE_MIN_NEIGHBOURS, minSize=(20, 20)
    )
    # candidates as fractions of the face box: centre (x, y) and size
    candidates = [((ex + ew / 2) / zoom / w, (ey + eh / 2) / zoom / w, ew / zoom / w) for ex, ey, ew, eh in found]
    pair = _best_eye_pair(candidates)
    fractions, ok = (pair, True) if pair is not None else (_BOX_EYES, False)
    return fractions * w + (x0, y0) - 0.5, ok  # box edges -> pixel centres


def _best_eye_pair(candidates) -> np.ndarray | None:
    """The pair of eye candidates (fractions of the face box) that looks most like two eyes of one face."""
    best, best_score = None, 0.3  # a worse pair is not trusted: the box's eye positions are used instead
    for i, first in enumerate(candidates):
        for second in candidates[i + 1 :]:
            left, right = sorted((first, second))
            distance = right[0] - left[0]
            if not 0.25 <= distance <= 0.6 or not (0.15 <= left[1] <= 0.6 and 0.15 <= right[1] <= 0.6):
                continue
            score = (
                abs((left[0] + right[0]) / 2 - 0.5)  # symmetric about the box centre
                + abs(right[1] - left[1])  # level (the face search found it upright within ~15 degrees)
                + abs(left[2] - right[2])  # the same size
                + abs(distance - 0.4) / 2  # the usual spacing
            )
            if score < best_score:
                best, best_score = np.array([left[:2], right[:2]]), score
    return best


def framed_like_training(eyes_in_frame: np.ndarray, size: int, eye_range) -> bool:
    """True when eyes (2, 2) in a `size` px model frame lie within `eye_range` (a model's
    `lfdm.framing.ModelFraming.eye_range`: where its training faces have their eyes), give or take the eye cascade's
    error (`EYE_TOLERANCE`): that picture needs no re-framing (re-sampling would blur it)."""
    measures = eye_measures(np.asarray(eyes_in_frame, float) / size)
    return all(
        eye_range[name][0] - EYE_TOLERANCE[name] <= float(value) <= eye_range[name][1] + EYE_TOLERANCE[name]
        for name, value in measures.items()
    )


def alignment_matrix(eyes: np.ndarray, size: int, target_eyes: np.ndarray) -> np.ndarray:
    """The similarity transform (2, 3) that takes eyes (2, 2) (photo pixels, left first) onto `target_eyes` (2, 2)
    (fractions of the side, a model's `lfdm.framing.ModelFraming.target_eyes()`) in a `size` px frame: photo pixels
    -> crop pixels."""
    eyes = np.asarray(eyes, float)
    target = np.asarray(target_eyes, float) * size - 0.5  # fractions of the side -> pixels (centres on integers)
    source_vector, target_vector = eyes[1] - eyes[0], target[1] - target[0]
    scale = np.hypot(*target_vector) / max(np.hypot(*source_vector), 1e-6)
    angle = math.atan2(target_vector[1], target_vector[0]) - math.atan2(source_vector[1], source_vector[0])
    linear = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    offset = target.mean(0) - linear @ eyes.mean(0)
    return np.concatenate([linear, offset[:, None]], axis=1)


def warp_to_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The uint8 (size, size, 3) crop of `image` under `matrix` (photo pixels -> crop pixels). A photo much larger
    than the crop is first halved (`pyrDown`) until the crop samples it at most 2x apart, so it does not alias;
    outside the photo the edge pixels are repeated (a black border would look like an object to the model)."""
    matrix = np.asarray(matrix, float).copy()
    while math.hypot(matrix[0, 0], matrix[1, 0]) < 0.5 and min(image.shape[:2]) > 2 * size:
        image = cv2.pyrDown(image)
        # a pyrDown pixel i covers photo pixels 2i - 0.5 .. 2i + 1.5: photo = 2 * small + 0.5
        matrix[:, 2] += matrix[:, :2] @ np.array([0.5, 0.5])
        matrix[:, :2] *= 2
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
