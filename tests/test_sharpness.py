"""The sharpness figures of photo videos (`lfdm.evaluation.sharpness`)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lfdm.evaluation.sharpness import band_boxes, far_change, laplacian_variance, sharpness_ratios


def _textured(size: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_bands_are_the_eye_and_mouth_rows_of_the_face_box():
    boxes = band_boxes((10, 20, 110, 220))
    assert boxes["face"] == (10, 20, 110, 220)
    assert boxes["eyes"] == (10, 60, 110, 120)
    assert boxes["mouth"] == (10, 140, 110, 210)


def test_a_still_video_keeps_ratio_1_and_a_blurred_one_falls():
    frame = _textured()
    blurred = cv2.GaussianBlur(frame, (0, 0), 1.5)
    video = np.stack([frame, frame, blurred])
    ratios = sharpness_ratios(video, (16, 16, 80, 80), frames=(1, 2))
    for band in ("face", "eyes", "mouth"):
        assert ratios[band][0] == pytest.approx(1.0)
        assert ratios[band][1] < 0.3
    noisy = np.clip(frame.astype(int) + np.random.default_rng(1).integers(-60, 61, frame.shape), 0, 255)
    assert sharpness_ratios(np.stack([blurred, noisy.astype(np.uint8)]), (16, 16, 80, 80), (1,))["face"][0] > 1.5
    float_video = video.astype(np.float32) / 255
    assert sharpness_ratios(float_video, (16, 16, 80, 80), (2,))["face"][0] == pytest.approx(
        ratios["face"][1], rel=1e-3
    )


def test_laplacian_variance_of_a_flat_picture_is_zero_and_tiny_bands_are_refused():
    assert laplacian_variance(np.full((20, 20), 128.0)) == 0
    with pytest.raises(ValueError, match="too small"):
        sharpness_ratios(np.stack([_textured()] * 2), (10, 10, 12, 12), (1,))


def test_far_change_sees_only_pixels_far_from_the_face():
    video = np.stack([_textured(120)] * 2)
    video[1, 50:60, 50:60] = 0  # inside the face box: not far
    assert far_change(video, (40, 40, 70, 70)) == 0
    video[1, 5, 5] = (video[0, 5, 5].astype(int) + 100) % 256  # a corner pixel changes
    changed = np.abs(video[1, 5, 5].astype(int) - video[0, 5, 5]).max()
    assert far_change(video, (40, 40, 70, 70)) == changed
    assert far_change(video, (0, 0, 120, 120)) == 0  # no pixel is far
