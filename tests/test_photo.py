"""Real photographs: finding the face (`lfdm.faces`), framing it, and the video at the photo's size (`lfdm.photo`),
through the pipeline's `face`, `resolution` and `max_resolution` (tiny random pipeline, 32 px, 4 frames)."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from lfdm import faces
from lfdm.framing import SYNTHFACE_FRAMING
from lfdm.images import preprocess_image
from lfdm.photo import Framing, frame_photo, render_photo_video

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
ASTRONAUT = EXAMPLES / "astronaut.png"
FACE_CENTRE = np.array([160.5, 113.5])  # of the astronaut's face box in assets/examples/astronaut.png (x, y)
STEPS = 2


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(ASTRONAUT).convert("RGB"))


def turned(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT), matrix


def small_jpeg(image: np.ndarray, side: int = 200, quality: int = 30) -> np.ndarray:
    small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    buffer = io.BytesIO()
    Image.fromarray(small).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def variants(photo: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (picture, where the face's centre is in it)."""
    width = photo.shape[1]
    rotated, matrix = turned(photo, 12)
    canvas = np.full((700, 1100, 3), (90, 110, 130), np.uint8)
    canvas[300:620, 700:1020] = photo[:, ::-1]
    gray = np.repeat(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=-1)
    return {
        "mirrored": (photo[:, ::-1].copy(), np.array([width - 1 - FACE_CENTRE[0], FACE_CENTRE[1]])),
        "rotated 12 degrees": (rotated, matrix @ np.append(FACE_CENTRE, 1)),
        "grayscale": (gray, FACE_CENTRE),
        "small JPEG": (small_jpeg(photo), (FACE_CENTRE + 0.5) * 200 / width - 0.5),
        "larger canvas": (canvas, np.array([700 + width - 1 - FACE_CENTRE[0], 300 + FACE_CENTRE[1]])),
    }


def box_centre(box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


# --- finding and aligning the face ------------------------------------------------------------------------------


def test_the_face_is_found_in_every_variant_of_a_real_portrait(photo):
    for name, (picture, centre) in variants(photo).items():
        found = faces.detect_faces(picture)
        assert found, f"{name}: no face found"
        side = found[0].side
        assert np.linalg.norm(box_centre(found[0].box) - centre) < 0.15 * side, f"{name}: {found[0].box} vs {centre}"
        assert found[0].eyes_found, f"{name}: both eyes are found"


def test_eyes_match_where_synthface_draws_them():
    from lfdm.data.synthface.identity import landmarks, sample_identity

    for path in sorted(EXAMPLES.glob("synthface_*.png")):
        seed = int(path.stem.rsplit("_", 1)[1])
        picture = np.asarray(Image.open(path).convert("RGB"))
        truth = landmarks(sample_identity(seed), picture.shape[0])[:2] - 0.5
        eyes = faces.detect_faces(picture)[0].eyes
        assert np.abs(eyes - truth).max() < 0.06 * picture.shape[0], f"{path.name}: {eyes} vs {truth}"


def test_alignment_puts_the_eyes_on_the_canonical_points_and_inverts(photo):
    eyes = faces.detect_faces(photo)[0].eyes
    matrix = faces.alignment_matrix(eyes, 64, SYNTHFACE_FRAMING.target_eyes())
    target = SYNTHFACE_FRAMING.target_eyes() * 64 - 0.5
    np.testing.assert_allclose(eyes @ matrix[:, :2].T + matrix[:, 2], target, atol=1e-9)
    # pixels: crop at the photo's own scale, then back through the inverse transform
    scale = 1 / np.hypot(*matrix[:, 0])
    size = int(64 * scale)
    big = faces.alignment_matrix(eyes, size, SYNTHFACE_FRAMING.target_eyes())
    crop = faces.warp_to_crop(photo, big, size)
    back = cv2.warpAffine(crop, cv2.invertAffineTransform(big), photo.shape[1::-1], flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones((size - 4, size - 4), np.uint8), np.hstack([np.eye(2), [[2], [2]]]), (size, size))
    inside = cv2.warpAffine(inside, cv2.invertAffineTransform(big), photo.shape[1::-1], flags=cv2.INTER_NEAREST) > 0
    error = np.abs(back.astype(float) - photo)[inside].mean()
    assert inside.sum() > 10_000 and error < 4, f"crop and back: mean error {error:.2f}/255"


def test_synthface_examples_are_animated_in_place_exactly_as_before():
    for path in sorted(EXAMPLES.glob("synthface_*.png")):
        framing = frame_photo(Image.open(path), 64, model_framing=SYNTHFACE_FRAMING)
        assert framing.face is not None and not framing.aligned, f"{path.name} is framed like the training faces"
        expected = preprocess_image(Image.open(path), 64)
        assert torch.equal(framing.model_tensor(), expected), "the model sees exactly what preprocess_image gives"


def test_the_whole_picture_framing_is_preprocess_image_for_every_kind_of_input(tiny_image):
    rgba = np.dstack([tiny_image, np.full(tiny_image.shape[:2], 200, np.uint8)])
    for image in (tiny_image, tiny_image[:30], Image.fromarray(tiny_image).convert("L"), rgba, tiny_image / 255.0):
        framing = frame_photo(image, 32, face="none", model_framing=SYNTHFACE_FRAMING)
        assert torch.equal(framing.model_tensor(), preprocess_image(image, 32))


def test_no_face_falls_back_to_the_whole_picture_with_a_note(tiny_image):
    smiley = np.full((200, 200, 3), 255, np.uint8)  # a drawn face: the detector is for photographs
    cv2.circle(smiley, (100, 100), 70, (255, 220, 0), -1)
    for eye_x in (75, 125):
        cv2.circle(smiley, (eye_x, 80), 10, (0, 0, 0), -1)
    cv2.ellipse(smiley, (100, 115), (40, 25), 0, 0, 180, (0, 0, 0), 4)
    for picture in (tiny_image, smiley):
        framing = frame_photo(picture, 32, model_framing=SYNTHFACE_FRAMING)
        assert framing.face is None and framing.face_box is None and not framing.aligned
        assert "no face was found" in framing.note.lower() and "whole picture" in framing.note
        with pytest.raises(ValueError, match="no face was found.*face='auto' or 'none'"):
            frame_photo(picture, 32, face="require", model_framing=SYNTHFACE_FRAMING)


def test_a_face_under_32_px_gets_a_clear_message(photo):
    canvas = np.full((240, 320, 3), 128, np.uint8)
    canvas[60:150, 100:190] = cv2.resize(photo, (90, 90), interpolation=cv2.INTER_AREA)
    assert faces.detect_faces(canvas)[0].side < faces.MIN_FACE_SIDE, "the test needs a face the cascade still finds"
    framing = frame_photo(canvas, 32, model_framing=SYNTHFACE_FRAMING)
    assert framing.face is None and "px wide; faces need at least 32 px" in framing.note
    with pytest.raises(ValueError, match="faces need at least 32 px"):
        frame_photo(canvas, 32, face="require", model_framing=SYNTHFACE_FRAMING)


# --- rendering at the photo's size -----------------------------------------------------------------------------


def test_paste_back_leaves_pixels_away_from_the_face_untouched(photo):
    framing = frame_photo(photo, 32, face="require", model_framing=SYNTHFACE_FRAMING)
    assert framing.aligned
    generator = torch.Generator().manual_seed(0)
    flows = torch.rand(1, 4, 8, 8, 2, generator=generator) * 2 - 1  # wild motion everywhere in the crop
    occlusions = torch.rand(1, 4, 8, 8, generator=generator)
    decoded = torch.rand(1, 4, 3, 32, 32, generator=generator)
    video = render_photo_video(framing, flows, occlusions, decoded, photo.shape[:2])[0].permute(0, 2, 3, 1).numpy()
    reference = photo / 255
    assert np.abs(video[0] - reference).max() < 1e-5, "frame 0 is the photo"
    # the crop's footprint on the photo: everything outside it must stay the photo's pixels
    inverse = cv2.invertAffineTransform(framing.matrix)
    footprint = cv2.warpAffine(np.ones((32, 32), np.uint8), inverse, photo.shape[1::-1], flags=cv2.INTER_NEAREST)
    outside = cv2.dilate(footprint, np.ones((5, 5), np.uint8)) == 0
    assert outside.mean() > 0.4
    assert np.abs(video - reference)[:, outside].max() < 1e-6, "pixels away from the face do not change"
    assert np.abs(video[1:] - reference)[:, ~outside].mean() > 0.01, "the face region moves"


def test_resolution_input_returns_the_photo_with_frame_zero_equal_to_it(tiny_pipeline, photo):
    out = tiny_pipeline(photo, ["smile", "frown"], num_inference_steps=STEPS, resolution="input")
    assert out.frames.shape == (2, 4, 320, 320, 3)
    assert np.abs(out.frames[:, 0] - photo / 255).max() < 1e-5, "frame 0 is the photo"
    assert out.face_box is not None and np.linalg.norm(box_centre(out.face_box) - FACE_CENTRE) < 10
    assert out.face_note is None
    assert out.flows.shape == (2, 4, 8, 8, 2) and out.model_frames.shape == (2, 4, 32, 32, 3), "the crop's"
    assert out.model_input.shape == (32, 32, 3)
    assert np.abs(out.frames[:, -1] - out.frames[:, 0]).max() > 0.1, "the face moves"
    assert np.abs(out.frames[:, :, 280:, :60] - photo[280:, :60] / 255).max() < 1e-6, "a far corner stays still"


def test_resolution_none_keeps_the_model_frames_of_todays_path(tiny_pipeline, tiny_image):
    seeded = torch.Generator().manual_seed(3)
    out = tiny_pipeline(tiny_image, "smile", num_inference_steps=STEPS, generator=seeded, output_type="pt")
    assert out.frames.shape == (1, 4, 32, 32, 3) and out.face_box is None and "no face" in out.face_note.lower()
    # today's path: preprocess_image -> LFAE decode of the flows; every frame must be bit-for-bit the same
    pixels = preprocess_image(tiny_image, 32)
    flat = tiny_pipeline.lfae.decode(pixels, out.flows[0], out.occlusions[0][:, None])
    assert torch.equal(out.frames[0], flat.prediction.clamp(0, 1).permute(0, 2, 3, 1))
    assert torch.equal(out.model_frames, out.frames)
    none = tiny_pipeline(
        tiny_image, "smile", num_inference_steps=STEPS, generator=torch.Generator().manual_seed(3), face="none"
    )
    np.testing.assert_array_equal(none.frames, out.frames.numpy())


def test_synthface_examples_give_the_same_video_with_and_without_the_face_search(tiny_pipeline):
    image = Image.open(sorted(EXAMPLES.glob("synthface_*.png"))[0])
    auto, none = (
        tiny_pipeline(image, "frown", num_inference_steps=STEPS, generator=torch.Generator().manual_seed(1), face=face)
        for face in ("auto", "none")
    )
    assert auto.face_box is not None and none.face_box is None
    np.testing.assert_array_equal(auto.frames, none.frames)


def test_whole_picture_path_renders_at_any_size_with_the_photos_aspect(tiny_pipeline, tiny_image):
    picture = tiny_image[:, :40]  # 48 high, 40 wide
    out = tiny_pipeline(picture, "smile", num_inference_steps=STEPS, resolution=96)
    assert out.frames.shape == (1, 4, 96, 80, 3)
    resized = cv2.resize(picture, (80, 96), interpolation=cv2.INTER_LANCZOS4) / 255
    assert np.abs(out.frames[0, 0] - resized).max() <= 1 / 255, "frame 0 is the photo, enlarged"
    same = tiny_pipeline(picture, "smile", num_inference_steps=STEPS, resolution="input")
    np.testing.assert_array_equal(same.frames[0, 0], picture / np.float32(255), "at its own size: the photo exactly")
    capped = tiny_pipeline(picture, "smile", num_inference_steps=STEPS, resolution="input", max_resolution=24)
    assert capped.frames.shape == (1, 4, 24, 20, 3), "the long side is capped by max_resolution"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"face": "maybe"}, "`face` must be one of"),
        ({"resolution": "big"}, "`resolution` must be None"),
        ({"resolution": 4}, "`resolution` must be None"),
        ({"resolution": True}, "`resolution` must be None"),
        ({"max_resolution": 8}, "`max_resolution` must be at least"),
    ],
)
def test_bad_photo_options_raise_value_errors(tiny_pipeline, tiny_image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_pipeline(tiny_image, "smile", num_inference_steps=1, **kwargs)


def test_a_framing_outside_the_photo_renders_the_photo_unchanged(tiny_image):
    framing = Framing(
        tiny_image, np.array([[1.0, 0, -500], [0, 1.0, -500]]), 32, tiny_image[:32, :32], aligned=True
    )  # the model's frame lies far to the bottom right of the photo
    flows = torch.rand(1, 2, 8, 8, 2) * 2 - 1
    video = render_photo_video(framing, flows, torch.rand(1, 2, 8, 8), torch.rand(1, 2, 3, 32, 32), (48, 48))
    assert torch.equal(video[0, 1], torch.from_numpy(tiny_image).permute(2, 0, 1).float() / 255)


def test_a_longer_video_of_a_photo_chains_clips_of_the_face_and_renders_at_the_photos_size(tiny_pipeline, photo):
    clip = tiny_pipeline.num_frames
    out = tiny_pipeline(
        photo, "smile", num_inference_steps=STEPS, num_frames=clip + 3, motion_scale=1.5, resolution="input"
    )
    assert out.frames.shape == (1, clip + 3, 320, 320, 3), "longer than one clip, at the photo's size"
    assert out.flows.shape == (1, clip + 3, 8, 8, 2) and out.model_frames.shape == (1, clip + 3, 32, 32, 3)
    assert out.face_box is not None and np.linalg.norm(box_centre(out.face_box) - FACE_CENTRE) < 10
    assert np.abs(out.frames[:, 0] - photo / 255).max() < 1e-5, "frame 0 is the photo"
    assert np.abs(out.frames[:, :, 280:, :60] - photo[280:, :60] / 255).max() < 1e-6, "a far corner stays still"


def test_a_driving_video_animates_the_photos_face_at_the_photos_size(tiny_pipeline, photo):
    driving = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = tiny_pipeline.animate(photo, driving, resolution="input", driving_face="none")
    assert out.frames.shape == (1, 5, 320, 320, 3) and out.model_frames.shape == (1, 5, 32, 32, 3)
    assert out.face_box is not None and np.linalg.norm(box_centre(out.face_box) - FACE_CENTRE) < 10
    assert np.abs(out.frames[:, 0] - photo / 255).max() < 1e-5, "frame 0 is the photo"
    assert np.abs(out.frames[:, :, 280:, :60] - photo[280:, :60] / 255).max() < 1e-6, "a far corner stays still"
    whole = tiny_pipeline.animate(photo, driving, face="none", driving_face="none")
    assert whole.face_box is None and whole.frames.shape == (1, 5, 32, 32, 3)


def _mouth_and_eye_pixels(framing) -> tuple[tuple[int, int], tuple[int, int]]:
    """(x, y) photo pixels of the mouth's centre (1.15 eye spacings below the eyes) and of the image-left eye."""
    eyes = framing.face.eyes
    spacing = float(np.hypot(*(eyes[1] - eyes[0])))
    mouth = eyes.mean(0) + np.array([0.0, 1.15 * spacing])
    return tuple(np.round(mouth).astype(int)), tuple(np.round(eyes[0]).astype(int))


@pytest.mark.parametrize("darker", [True, False])
def test_new_content_the_decoder_darkens_in_the_mouth_is_shaded_like_an_open_mouth(photo, darker):
    framing = frame_photo(photo, 64, face="require", model_framing=SYNTHFACE_FRAMING)
    (mouth_x, mouth_y), (eye_x, eye_y) = _mouth_and_eye_pixels(framing)
    flows = torch.zeros(1, 2, 16, 16, 2)  # nothing moves...
    occlusions = torch.stack([torch.ones(1, 16, 16), torch.zeros(1, 16, 16)], 1)  # ...and everything is new
    decoded = torch.full((1, 2, 3, 64, 64), 0.6)
    decoded[:, 1] = 0.4 if darker else 0.8  # the decoder's frame 1 darker (an opening mouth) or brighter (teeth)
    video = render_photo_video(framing, flows, occlusions, decoded, photo.shape[:2])[0, 1].permute(1, 2, 0).numpy()
    change = -0.2 if darker else 0.2
    added = photo / 255 + change  # the decoder's change alone (the renderer does not clip)
    assert np.abs(video[eye_y, eye_x] - added[eye_y, eye_x]).max() < 1e-4, "the eyes get the decoder's change only"
    if darker:
        inside = video[mouth_y, mouth_x]
        assert inside.max() < 0.3 * added[mouth_y, mouth_x].max() + 1e-6, "an opening mouth is dark"
        assert inside[0] > inside[1], "and red-brown, not grey"
        # texture stays: the shading multiplies the warped photo, so its neighbouring pixels still differ
        patch = video[mouth_y - 3 : mouth_y + 4, mouth_x - 3 : mouth_x + 4]
        assert patch.std() > 0.0
    else:
        assert np.abs(video[mouth_y, mouth_x] - added[mouth_y, mouth_x]).max() < 1e-4, "teeth are not shaded"


def test_a_whole_picture_has_no_mouth_to_shade(photo):
    framing = frame_photo(photo, 64, face="none", model_framing=SYNTHFACE_FRAMING)
    assert framing.face is None
    occlusions = torch.stack([torch.ones(1, 16, 16), torch.zeros(1, 16, 16)], 1)
    decoded = torch.full((1, 2, 3, 64, 64), 0.6)
    decoded[:, 1] = 0.3
    video = render_photo_video(framing, torch.zeros(1, 2, 16, 16, 2), occlusions, decoded, photo.shape[:2])
    expected = photo / 255 - 0.3
    assert np.abs(video[0, 1].permute(1, 2, 0).numpy() - expected).max() < 1e-4


def test_faces_are_found_on_several_threads_at_once(photo):
    """Each thread has its own cascades: one shared classifier keeps scratch data sized for its last picture, and two
    threads searching pictures of other sizes at once fail inside OpenCV."""
    from concurrent.futures import ThreadPoolExecutor

    pictures = [cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA) for side in (200, 260, 320, 380)] * 8
    expected = [faces.detect_faces(picture)[0].side for picture in pictures[:4]] * 8
    with ThreadPoolExecutor(max_workers=4) as pool:
        sides = list(pool.map(lambda picture: faces.detect_faces(picture)[0].side, pictures))
    assert sides == expected
