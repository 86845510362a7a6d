"""Finding and framing the driving face in every frame (`lfdm.face_track`, `pipe.animate(driving_face=...)`): one
smoothed track, lost frames filled in, the camera's motion taken out; on synthetic tracks and on the astronaut
portrait filmed by a moving camera (the tiny random pipeline: the plumbing, not the motion's quality)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lfdm.driving import DRIVING_SOURCE_SIDE, frame_driving_faces, load_driving_video
from lfdm.face_track import (
    HEAD_MASK,
    FaceTrack,
    _outside_head,
    _refine,
    crop_track,
    eye_parameters,
    eyes_from_parameters,
    follow_face,
    searched_frames,
    smooth_track,
    track_face,
)
from lfdm.faces import Face
from lfdm.framing import SYNTHFACE_FRAMING, WHOLE_PICTURE
from lfdm.testing import film_with_moving_camera, make_tiny_pipeline
from lfdm.video import read_video

ASSETS = Path(__file__).resolve().parents[1] / "assets"
FRAMES = 8


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return np.asarray(Image.open(ASSETS / "examples" / "astronaut.png").convert("RGB"))


@pytest.fixture(scope="module")
def handheld(portrait) -> tuple[np.ndarray, np.ndarray]:
    """The still portrait filmed by a camera that pans 5 %, zooms 10 % and shakes: uint8 (8, 256, 256, 3), and the
    camera's (8, 2, 3) output -> portrait pixel matrices."""
    return film_with_moving_camera(np.stack([portrait] * FRAMES), 256)


def to_output(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Portrait pixels -> pixels of the filmed frame, for a camera matrix (output -> portrait)."""
    forward = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    return points @ forward[:2, :2].T + forward[:2, 2]


# --- the smoothing, on synthetic tracks ----------------------------------------------------------------------------


def test_smoothing_follows_a_steady_pan_without_lag_even_at_the_ends():
    times = np.arange(20.0)
    values = np.stack([3 * times + 5, -0.5 * times, 0.01 * times, np.zeros(20)], axis=1)
    smoothed = smooth_track(times, values, np.ones(20), 20)
    np.testing.assert_allclose(smoothed, values, atol=1e-5, err_msg="a linear motion of the camera is kept exactly")


def test_smoothing_averages_out_the_detectors_jitter():
    rng = np.random.default_rng(0)
    times = np.arange(48.0)
    truth = np.stack([100 + 0.8 * times, 80 + 10 * np.sin(times / 12)], axis=1)
    noisy = truth + rng.normal(0, 2.0, truth.shape)
    smoothed = smooth_track(times, noisy, np.ones(48), 48)
    raw_error, smooth_error = np.abs(noisy - truth).mean(), np.abs(smoothed - truth).mean()
    assert smooth_error < 0.5 * raw_error, f"jitter {raw_error:.2f} px -> {smooth_error:.2f} px"
    # and better than one crop box averaged over the clip, which keeps none of the motion
    assert smooth_error < 0.2 * np.abs(truth.mean(0) - truth).mean()


def test_lost_frames_are_filled_in_from_their_neighbours_and_the_ends_held():
    times = np.array([2.0, 3.0, 4.0, 10.0, 11.0, 12.0])
    values = (10 * times)[:, None]
    smoothed = smooth_track(times, values, np.ones(6), 15)[:, 0]
    np.testing.assert_allclose(smoothed[2:13], 10 * np.arange(2, 13), atol=0.5, err_msg="gap 5-9 interpolated")
    assert np.allclose(smoothed[:2], smoothed[2]) and np.allclose(smoothed[13:], smoothed[12]), "held beyond ends"


def test_a_frame_far_from_every_sample_does_not_divide_by_zero():
    smoothed = smooth_track(np.array([0.0, 200.0]), np.array([[1.0], [3.0]]), np.ones(2), 201)
    assert np.isfinite(smoothed).all() and smoothed[0, 0] == pytest.approx(1) and smoothed[-1, 0] == pytest.approx(3)


def test_guessed_eyes_weigh_less_than_found_ones():
    times = np.arange(5.0)
    values = np.array([[0.0], [0.0], [9.0], [0.0], [0.0]])
    light = smooth_track(times, values, np.array([1, 1, 0.25, 1, 1]), 5)[2, 0]
    heavy = smooth_track(times, values, np.ones(5), 5)[2, 0]
    assert light < heavy


def test_eye_parameters_round_trip():
    eyes = np.array([[[10.0, 20.0], [30.0, 24.0]], [[5.0, 5.0], [9.0, 1.0]]])
    np.testing.assert_allclose(eyes_from_parameters(eye_parameters(eyes)), eyes, atol=1e-9)


def fake_face(x: float, y: float, side: float, eyes_found: bool = True) -> Face:
    eyes = np.array([[x - 0.2 * side, y - 0.1 * side], [x + 0.2 * side, y - 0.1 * side]])
    return Face(box=(x - side / 2, y - side / 2, x + side / 2, y + side / 2), side=side, eyes=eyes,
                eyes_found=eyes_found)  # fmt: skip


def test_one_face_is_followed_and_others_are_ignored():
    detections = {
        0: [],  # no face yet
        1: [fake_face(100, 100, 60), fake_face(250, 90, 50)],  # the first face of the first frame with one
        2: [fake_face(250, 92, 50), fake_face(104, 101, 61)],  # the other face comes first: the nearest is kept
        3: [fake_face(250, 92, 50)],  # only the other face: this frame is lost, the track does not jump
        4: [fake_face(108, 102, 200)],  # three times larger: not the same face
        5: [fake_face(110, 103, 62), fake_face(111, 103, 20)],  # a face under 32 px is not used
    }
    tracked = follow_face(detections)
    assert sorted(tracked) == [1, 2, 5]
    assert [tracked[index].box[0] + tracked[index].side / 2 for index in (1, 2, 5)] == [100, 104, 110]


def test_long_videos_are_searched_every_kth_frame_and_the_last():
    assert searched_frames(10).tolist() == list(range(10))
    assert searched_frames(200, 64).tolist() == list(range(0, 200, 4)) + [199]


# --- a real face filmed by a moving camera -------------------------------------------------------------------------


def test_the_track_follows_a_real_face_through_pan_zoom_and_a_lost_frame(portrait, handheld):
    clip, cameras = handheld
    clip = clip.copy()
    clip[5] = clip[5].mean(axis=(0, 1), keepdims=True).astype(np.uint8)  # a frame with no face at all
    track = track_face(clip)
    assert isinstance(track, FaceTrack) and track.eyes.shape == (FRAMES, 2, 2)
    assert track.found.tolist() == [True] * 5 + [False] + [True] * 2
    reference = track_face(portrait[None]).eyes[0]  # where the portrait's eyes are, found once on the still
    expected = np.stack([to_output(matrix, reference) for matrix in cameras])
    error = np.linalg.norm(track.eyes - expected, axis=-1).max() / track.side
    assert error < 0.04, f"the smoothed eyes follow the camera to {error:.3f} of the face's side (frame 5 included)"


def test_the_crops_take_the_cameras_motion_out(handheld):
    clip, _ = handheld
    crops = crop_track(clip, track_face(clip), 64, SYNTHFACE_FRAMING.target_eyes()).astype(float)
    raw = np.stack([np.asarray(Image.fromarray(frame).resize((64, 64), Image.BILINEAR)) for frame in clip]).astype(
        float
    )
    camera_change = np.abs(raw[1:] - raw[:1]).mean()
    crop_change = np.abs(crops[1:] - crops[:1]).mean()
    assert crop_change < 0.35 * camera_change, f"{crop_change:.1f} vs {camera_change:.1f} grey levels of change"


def test_a_driving_video_keeps_a_source_copy_for_the_face_search(handheld):
    video = load_driving_video(handheld[0], 32)
    assert video.frames.shape == (FRAMES, 3, 32, 32) and video.source.shape == (FRAMES, 256, 256, 3)
    large = load_driving_video(np.zeros((2, 480, 960, 3), np.uint8), 32)
    assert large.source.shape == (2, DRIVING_SOURCE_SIDE // 2, DRIVING_SOURCE_SIDE, 3), "shrunk, aspect kept"


# --- through the pipeline --------------------------------------------------------------------------------------------


def test_animate_frames_the_driving_face_and_says_where_it_was_found(tiny_pipeline, portrait, handheld):
    clip = handheld[0].copy()
    clip[5] = 128
    out = tiny_pipeline.animate(portrait, clip)
    assert out.frames.shape == (1, FRAMES, 32, 32, 3)
    assert out.driving_face_frames.dtype == bool and out.driving_face_frames.tolist() == [True] * 5 + [
        False,
        True,
        True,
    ]
    assert "found in 7 of 8 frames" in out.driving_note
    framed = frame_driving_faces(load_driving_video(clip, 32), 32, tiny_pipeline.framing)
    assert framed.aligned and framed.frames.shape == (FRAMES, 3, 32, 32)
    none = tiny_pipeline.animate(portrait, clip, driving_face="none")
    assert none.driving_face_frames is None and none.driving_note is None
    assert np.abs(none.flows - out.flows).max() > 1e-4, "the frames the motion is estimated on differ"


def test_a_clip_without_a_face_says_what_to_do(tiny_pipeline, portrait):
    still = np.full((4, 64, 64, 3), 90, np.uint8)
    with pytest.raises(ValueError, match="no face was found in any of the 4 driving frames.*driving_face='none'"):
        tiny_pipeline.animate(portrait, still)
    assert tiny_pipeline.animate(portrait, still, driving_face="none").frames.shape[1] == 4
    with pytest.raises(ValueError, match="`driving_face` must be one of"):
        tiny_pipeline.animate(portrait, still, driving_face="require")


def test_synthface_clips_drive_exactly_as_before():
    """SynthFace clips show their face where the model's training faces have theirs: used as they are."""
    pipe = make_tiny_pipeline(image_size=64)
    clip = ASSETS / "driving" / "synthface_disgust.mp4"
    face = ASSETS / "examples" / "synthface_test_8388608.png"
    auto, none = pipe.animate(face, clip, max_frames=6), pipe.animate(face, clip, max_frames=6, driving_face="none")
    np.testing.assert_array_equal(auto.frames, none.frames)
    assert auto.driving_face_frames.sum() >= 5 and "framed like the model's faces already" in auto.driving_note


def test_a_whole_picture_model_uses_the_driving_frames_as_they_are(portrait, handheld):
    pipe = make_tiny_pipeline()
    pipe.lfae.register_to_config(framing=WHOLE_PICTURE.to_config())
    assert not pipe.framing.is_face
    auto, none = pipe.animate(portrait, handheld[0]), pipe.animate(portrait, handheld[0], driving_face="none")
    np.testing.assert_array_equal(auto.frames, none.frames)
    assert auto.driving_face_frames is None


def test_every_example_clip_has_a_name_and_a_thumbnail_of_its_own():
    folder = ASSETS / "driving"
    clips = json.loads((folder / "clips.json").read_text())
    assert sorted(clip["file"] for clip in clips) == sorted(path.name for path in folder.glob("*.mp4"))
    assert len({clip["name"] for clip in clips}) == len(clips) and len({clip["thumbnail"] for clip in clips}) == len(
        clips
    )
    for clip in clips:
        assert (folder / clip["thumbnail"]).is_file() and (folder / clip["file"]).stat().st_size < 100_000


def test_the_real_example_clip_shows_its_face_in_every_frame():
    frames = read_video(ASSETS / "driving" / "astronaut_surprise_handheld.mp4")
    assert frames.shape[1:] == (256, 256, 3) and len(frames) >= 16
    assert track_face(frames).found.all()


def test_registration_is_refined_on_what_lies_outside_the_head():
    """A zoom and sub-pixel shift of the surroundings is recovered to a tenth of a pixel while the head (the
    expression) changes completely; started from the corners' estimate, here the identity."""
    import cv2

    side = 192
    texture = cv2.GaussianBlur(np.random.default_rng(0).uniform(0, 255, (side, side)).astype(np.float32), (0, 0), 2)
    truth = np.array([[1.02, 0.0, 0.4], [0.0, 1.02, -0.3]])  # first cut-out -> this one, scale and shift
    current = cv2.warpAffine(texture, truth, (side, side), flags=cv2.INTER_CUBIC,
                             borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    mask = _outside_head(side)
    assert mask[round(HEAD_MASK["centre"][1] * side), side // 2] == 0 and mask[2, 2] == 255
    current[mask == 0] = 255 - current[mask == 0]  # the head is another picture now
    refined = _refine(texture, current, np.eye(3)[:2], mask)
    points = np.array([[20.0, 20.0], [170.0, 30.0], [100.0, 180.0]])
    error = np.abs(points @ (refined - truth)[:, :2].T + (refined - truth)[:, 2]).max()
    assert error < 0.15, error
    flat = np.full((side, side), 128, np.float32)  # nothing to follow: the estimate is kept
    assert np.array_equal(_refine(flat, flat, truth, mask), truth)
