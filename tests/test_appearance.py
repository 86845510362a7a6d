"""SynthFace's photographic look: deterministic, shared by the frames of a video, only on the moving head where it
should be, and wired through the data set and the run config."""

from __future__ import annotations

import dataclasses
import re

import cv2
import numpy as np
import pytest

from lfdm.data.factory import DataConfig, build_dataset
from lfdm.data.synthetic import SynthFaceDataset, render_frames
from lfdm.data.synthface.appearance import (
    GRAIN_TEXTURES,
    TEXTURES,
    Appearance,
    load_texture,
    sample_appearance,
    texture_names,
)
from lfdm.data.synthface.expressions import ACTION_INDEX, ACTIONS
from lfdm.data.synthface.identity import sample_identity, static_layer

RESOLUTION = 32
FRAMES = 8


def _look(seed: int = 0, **changes) -> Appearance:
    return dataclasses.replace(sample_appearance(np.random.default_rng(seed)), **changes)


def _plain(**changes) -> Appearance:
    """A look that changes nothing, to switch single effects on."""
    none = dict(
        seed=1, backdrop=None, backdrop_zoom=1.0, backdrop_blur=0.0, backdrop_tint=(1.0, 1.0, 1.0),
        backdrop_saturation=1.0, skin=GRAIN_TEXTURES[0], skin_grain=0.0, skin_scale=0.5, light_angle=0.0, light=0.0,
        rim=0.0, highlight=0.0, image_light_angle=0.0, image_light=0.0, gains=(1.0, 1.0, 1.0), gamma=1.0, contrast=1.0,
        saturation=1.0, blur=0.0, noise=0.0, jpeg_quality=None,
    )  # fmt: skip
    return Appearance(**(none | changes))


def test_every_texture_loads_and_has_its_licence():
    licence = (TEXTURES / "LICENSE.md").read_text()
    listed = set(re.findall(r"`([a-z_]+)\.jpg`", licence))
    assert set(texture_names()) == listed and len(listed) >= 5
    assert set(GRAIN_TEXTURES) <= listed
    for name in texture_names():
        image = load_texture(name)
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8 and image.std() > 10


def test_same_look_same_pixels_and_it_changes_the_video():
    look = _look(3)
    first = render_frames(5, "happiness", 0, resolution=RESOLUTION, num_frames=FRAMES, appearance=look)
    again = render_frames(5, "happiness", 0, resolution=RESOLUTION, num_frames=FRAMES, appearance=look)
    flat = render_frames(5, "happiness", 0, resolution=RESOLUTION, num_frames=FRAMES)
    np.testing.assert_array_equal(first, again)
    assert first.shape == flat.shape and first.dtype == np.uint8
    assert np.abs(first.astype(int) - flat.astype(int)).mean() > 3


def test_a_pair_rendered_apart_matches_the_whole_video():
    """Stage one renders only the two frames of a pair: they must be the video's frames, sensor noise included."""
    look = _look(1, noise=0.02, jpeg_quality=50)
    whole = render_frames(9, "surprise", 2, resolution=RESOLUTION, num_frames=FRAMES, appearance=look)
    pair = render_frames(9, "surprise", 2, [2, 6], resolution=RESOLUTION, num_frames=FRAMES, appearance=look)
    np.testing.assert_array_equal(pair, whole[[2, 6]])
    assert not np.array_equal(whole[2], whole[6])


def test_shading_touches_only_what_the_frame_drew():
    identity = sample_identity(4)
    background = np.array(static_layer(identity, 64))
    canvas = background.copy()
    canvas[20:40, 24:40] = (200, 150, 120)  # "the head"
    pose = np.array([[64.0, 0.0, 32.0], [0.0, 64.0, 32.0]])
    _plain(light=0.6, rim=0.4, skin_grain=0.06, light_angle=0.3).shade_head(canvas, background, pose)
    outside = np.ones(canvas.shape[:2], bool)
    outside[20:40, 24:40] = False
    np.testing.assert_array_equal(canvas[outside], background[outside])
    head = canvas[20:40, 24:40].astype(int)
    assert head.std() > 2 and np.abs(head - (200, 150, 120)).mean() > 2  # lit unevenly, with grain


def test_the_shading_moves_with_the_head():
    """The same head drawn at two places gets the same shading, moved along (up to the warp's interpolation)."""
    look = _plain(light=0.6, rim=0.3, skin_grain=0.05)
    background = np.zeros((96, 96, 3), np.uint8)
    shaded = []
    for shift in (0, 10):
        canvas = background.copy()
        canvas[30:60, 20 + shift : 50 + shift] = 180
        pose = np.array([[64.0, 0.0, 35.0 + shift], [0.0, 64.0, 45.0]])
        look.shade_head(canvas, background, pose)
        shaded.append(canvas)
    difference = np.abs(shaded[0][30:60, 20:50].astype(int) - shaded[1][30:60, 30:60].astype(int))
    assert difference.max() <= 2


def test_backdrop_replaces_the_drawn_background_behind_the_body():
    flat = render_frames(2, "neutral", 0, [0], resolution=64, num_frames=FRAMES)[0]
    look = _plain(backdrop="grass")
    backdrop = render_frames(2, "neutral", 0, [0], resolution=64, num_frames=FRAMES, appearance=look)[0]
    assert np.abs(backdrop[:8, :8].astype(int) - flat[:8, :8].astype(int)).mean() > 10  # a corner: background
    np.testing.assert_allclose(backdrop[28:36, 28:36], flat[28:36, 28:36], atol=1)  # the middle of the face
    gray = _plain(backdrop="grass", backdrop_saturation=0.0).backdrop_image(64)
    assert np.abs(gray[..., 0].astype(int) - gray[..., 2].astype(int)).max() <= 1


def test_the_camera_effects():
    frames = render_frames(7, "anger", 0, [0, 3], resolution=64, num_frames=FRAMES)
    indices = np.array([0, 3])
    gray = _plain(saturation=0.0).photograph(frames, indices)
    assert np.abs(gray[..., 0].astype(int) - gray[..., 1].astype(int)).max() <= 1
    np.testing.assert_array_equal(_plain().photograph(frames, indices), frames)  # every effect off: unchanged
    blurred = _plain(blur=0.6).photograph(frames, indices)
    assert np.abs(np.diff(blurred.astype(int), axis=2)).mean() < np.abs(np.diff(frames.astype(int), axis=2)).mean()
    noisy = _plain(noise=0.03).photograph(frames, indices)
    assert 4 < np.abs(noisy.astype(int) - frames.astype(int)).mean() < 12
    jpeg = _plain(jpeg_quality=25).photograph(frames, indices)
    ok, data = cv2.imencode(".jpg", frames[1][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 25])
    np.testing.assert_array_equal(jpeg[1], cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])


def test_a_resting_smile_is_held_from_frame_0_and_the_label_moves_from_it():
    smile = np.zeros(len(ACTIONS))
    smile[[ACTION_INDEX["mouth_corner_up"], ACTION_INDEX["mouth_open"]]] = (0.8, 0.4)
    look = _plain(expression=tuple(smile))
    flat = render_frames(6, "surprise", 0, [0, 15], resolution=64, num_frames=16)
    smiling = render_frames(6, "surprise", 0, [0, 15], resolution=64, num_frames=16, appearance=look)
    assert np.abs(smiling[0].astype(int) - flat[0].astype(int))[36:56, 16:48].mean() > 3  # the mouth at frame 0
    np.testing.assert_array_equal(smiling[0][4:20, :], flat[0][4:20, :])  # the forehead: no change at rest
    assert np.abs(smiling[1].astype(int) - smiling[0].astype(int)).mean() > 2  # surprise still happens
    actions = look.hold_expression(np.full((2, len(ACTIONS)), 1.0))
    assert actions.max() <= 1.3 and actions[0, ACTION_INDEX["mouth_corner_up"]] == pytest.approx(1.3)
    assert _plain().hold_expression(actions) is actions


def test_looks_vary_and_keep_plain_draws_in_the_mix():
    looks = [sample_appearance(np.random.default_rng(seed)) for seed in range(200)]
    assert 0.5 < np.mean([look.backdrop is not None for look in looks]) < 0.9
    assert 0.3 < np.mean([look.jpeg_quality is not None for look in looks]) < 0.7
    assert 0.04 < np.mean([look.saturation == 0 for look in looks]) < 0.25
    assert len({look.seed for look in looks}) == 200
    assert all(look.skin in GRAIN_TEXTURES for look in looks)
    assert 0.3 < np.mean([any(look.expression) for look in looks]) < 0.7


def test_data_set_appearance_is_per_video_and_off_by_default():
    base = dict(resolution=RESOLUTION, num_frames=FRAMES, view="pair", length=40)
    flat = SynthFaceDataset("train", **base)
    assert all(flat.look(*flat.video_key(i)) is None for i in range(40))
    photo = SynthFaceDataset("train", appearance=1.0, **base)
    half = SynthFaceDataset("train", appearance=0.5, **base)
    assert all(photo.look(*photo.video_key(i)) is not None for i in range(40))
    assert 8 < sum(half.look(*half.video_key(i)) is not None for i in range(40)) < 32
    item, plain = photo[0], flat[0]
    assert (item["reference"] - plain["reference"]).abs().mean() > 0.01
    key = photo.video_key(0)
    assert photo.look(*key) == photo.look(*key)  # both frames of a pair get the same look
    with pytest.raises(ValueError, match="appearance"):
        SynthFaceDataset("train", appearance=1.5, **base)


def test_run_config_appearance_reaches_only_the_training_split():
    data = DataConfig(resolution=RESOLUTION, num_frames=FRAMES, appearance=0.7)
    assert build_dataset(data, view="pair", split="train", length=4).appearance == 0.7
    assert build_dataset(data, view="clip", split="test", num_identities=1).appearance == 0.0
    with pytest.raises(ValueError, match="data.appearance"):
        DataConfig(appearance=-0.1)


def test_contact_sheet_rows_can_have_looks():
    from lfdm.data.synthface.sheet import contact_sheet

    labels = ("fear", "happiness")
    flat = contact_sheet(3, resolution=32, num_frames=4, columns=2, labels=labels)
    photo = contact_sheet(3, resolution=32, num_frames=4, columns=2, labels=labels, looks=[None, _look(2)])
    assert flat.shape == photo.shape
    half = flat.shape[0] - 32  # the last row (happiness) has the look, the first (fear) has none
    assert np.abs(photo[half:].astype(int) - flat[half:].astype(int)).mean() > 3
    np.testing.assert_array_equal(photo[:half], flat[:half])
    with pytest.raises(ValueError, match="one look per label"):
        contact_sheet(3, resolution=32, num_frames=4, labels=labels, looks=[None])
