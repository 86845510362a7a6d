"""User images of every kind become the model's (1, 3, S, S) input in [0, 1], or a clear ValueError."""

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

from lfdm.images import load_image, preprocess_image, to_rgb_uint8

SIZE = 32


def _rgb(height=40, width=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_output_is_a_square_float_batch_in_unit_range():
    pixels = preprocess_image(Image.fromarray(_rgb(50, 30)), SIZE)
    assert pixels.shape == (1, 3, SIZE, SIZE) and pixels.dtype == torch.float32
    assert 0 <= pixels.min() and pixels.max() <= 1


def test_wide_image_keeps_its_aspect_and_is_padded_black_top_and_bottom():
    white = np.full((16, 64, 3), 255, np.uint8)  # 4:1 -> 32 x 8 band in the middle
    pixels = preprocess_image(white, SIZE)[0]
    rows = pixels.mean(dim=(0, 2))
    assert rows[:10].max() == 0 and rows[-10:].max() == 0, "padding above and below must be black"
    assert rows[14:18].min() > 0.99, "the picture itself stays white in the middle rows"


def test_rgba_is_composited_on_black():
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :8, 3] = 255  # left half opaque, right half transparent
    rgb = to_rgb_uint8(Image.fromarray(rgba, "RGBA"))
    assert (rgb[:, :8] == 200).all() and (rgb[:, 8:] == 0).all()
    assert (to_rgb_uint8(rgba) == rgb).all(), "numpy RGBA follows the same rule as PIL RGBA"


def test_grayscale_and_sixteen_bit_become_equal_rgb_channels():
    gray = np.linspace(0, 255, 16 * 16).reshape(16, 16).astype(np.uint8)
    from_l = to_rgb_uint8(Image.fromarray(gray, "L"))
    assert from_l.shape == (16, 16, 3) and (from_l[..., 0] == gray).all() and (from_l[..., 2] == gray).all()
    sixteen = gray.astype(np.uint16) * 257  # the same picture at 16 bits
    assert (to_rgb_uint8(sixteen) == from_l).all()
    image16 = Image.fromarray(sixteen)
    assert image16.mode.startswith("I;16") and (to_rgb_uint8(image16) == from_l).all()


def test_palette_cmyk_and_bilevel_images_convert():
    base = Image.fromarray(_rgb(16, 16))
    for image in (base.convert("P"), base.convert("CMYK"), base.convert("1"), base.convert("YCbCr")):
        assert to_rgb_uint8(image).shape == (16, 16, 3), image.mode


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((20, 40, 3), np.uint8)  # landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(array).save(path, exif=exif)
    assert to_rgb_uint8(load_image(path)).shape == (40, 20, 3)


def test_animated_image_gives_its_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((16, 16, 3), value, np.uint8)) for value in (10, 250)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    image = load_image(path)
    image.seek(1)
    assert abs(int(to_rgb_uint8(image).mean()) - 10) <= 2


def test_tensor_and_float_array_match_uint8_input():
    array = _rgb(24, 24)
    expected = preprocess_image(array, SIZE)
    tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    assert torch.equal(preprocess_image(tensor, SIZE), expected)
    assert torch.equal(preprocess_image(tensor[None], SIZE), expected)
    assert torch.equal(preprocess_image(array.astype(np.float32) / 255, SIZE), expected)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 40, 3), np.uint8), "at least"),
        (np.zeros((10, 400, 3), np.uint8), "longer than wide"),
        (np.full((16, 16, 3), 255.0, np.float32), "Divide by 255"),
        (np.zeros((3, 16, 16), np.uint8), "transpose"),
        (torch.zeros(2, 3, 16, 16), "one image at a time"),
        (np.full((16, 16), np.nan, np.float32), "NaN"),
    ],
)
def test_unusable_images_raise_a_plain_value_error(image, message):
    with pytest.raises(ValueError, match=message):
        preprocess_image(image, SIZE)


def test_unreadable_and_missing_files_raise(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="could not read"):
        preprocess_image(text, SIZE)
    with pytest.raises(FileNotFoundError):
        preprocess_image(tmp_path / "missing.png", SIZE)


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="PNG")
    path = tmp_path / "big.png"
    path.write_bytes(buffer.getvalue())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 * 64 pixels is now "too many"
    with pytest.raises(ValueError, match="too large"):
        load_image(path)
    with pytest.raises(ValueError, match="pixels"):
        preprocess_image(np.zeros((64, 64, 3), np.uint8), SIZE)


def test_wrong_type_raises_type_error():
    with pytest.raises(TypeError, match="PIL image"):
        preprocess_image([[0, 1], [1, 0]], SIZE)


def test_an_8_bit_rgb_array_comes_back_as_an_equal_copy_without_a_float_round_trip():
    rgb = np.zeros((6000, 6000, 3), np.uint8)
    rgb[::7, ::5] = (200, 100, 50)
    began = time.perf_counter()
    converted = to_rgb_uint8(rgb)  # a 6000x6000 photo: the float round trip took about 5 s on 2 cores
    assert time.perf_counter() - began < 1.5, "a copy takes a fraction of a second"
    assert np.array_equal(converted, rgb) and converted is not rgb and converted.flags.writeable
