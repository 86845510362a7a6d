import numpy as np
import pytest

from lfdm.video import probe_video, read_video, write_video


def moving_square(num_frames=6, height=32, width=40):
    """A white square moving right over a colour gradient: uint8 (F, H, W, 3)."""
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    frames[..., 0] = np.linspace(0, 200, width, dtype=np.uint8)
    frames[..., 2] = np.linspace(0, 200, height, dtype=np.uint8)[:, None]
    for index in range(num_frames):
        frames[index, 8:16, 4 + 3 * index : 12 + 3 * index] = 255
    return frames


def test_mp4_round_trip_is_h264_with_every_frame(tmp_path):
    frames = moving_square()
    path = write_video(tmp_path / "clip.mp4", frames, fps=8)
    info = probe_video(path)
    assert info.codec == "h264", f"browsers need H.264, got {info.codec}"
    assert (info.num_frames, info.width, info.height) == (6, 40, 32)
    assert info.fps == pytest.approx(8.0)
    decoded = read_video(path)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    error = np.abs(decoded.astype(float) - frames).mean()
    assert error < 6, f"CRF 18 should be close to lossless; mean abs error {error:.1f}"


def test_mp4_index_is_at_the_front_for_streaming(tmp_path):
    path = write_video(tmp_path / "clip.mp4", moving_square(), fps=8)
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "+faststart must move the moov atom before the media data"


def test_mp4_is_yuv420p(tmp_path):
    import subprocess

    import imageio_ffmpeg

    path = write_video(tmp_path / "clip.mp4", moving_square(), fps=8)
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True)
    assert b"yuv420p" in result.stderr, "browsers play only 4:2:0 H.264"


def test_odd_sizes_are_padded_not_rescaled(tmp_path):
    frames = moving_square(num_frames=3, height=31, width=33)
    decoded = read_video(write_video(tmp_path / "odd.mp4", frames, fps=4))
    assert decoded.shape == (3, 32, 34, 3)
    error = np.abs(decoded[:, :31, :33].astype(float) - frames).mean()
    assert error < 6, f"the original pixels must stay in place (no rescale); mean abs error {error:.1f}"


def test_gif_round_trip_keeps_repeated_frames_and_fps(tmp_path):
    frames = moving_square(num_frames=5) // 50 * 50  # 26 colours: one palette per frame holds them exactly
    frames[3] = frames[2]  # a repeated frame must not be merged away
    path = write_video(tmp_path / "clip.gif", frames, fps=10)
    info = probe_video(path)
    assert (info.codec, info.num_frames, info.width, info.height) == ("gif", 5, 40, 32)
    assert info.fps == pytest.approx(10.0)
    decoded = read_video(path)
    assert decoded.shape == frames.shape
    np.testing.assert_array_equal(decoded, frames)


def test_gif_loops_forever(tmp_path):
    from PIL import Image

    path = write_video(tmp_path / "clip.gif", moving_square(num_frames=2), fps=5)
    with Image.open(path) as image:
        assert image.info.get("loop") == 0


def test_frame_folder_is_read_in_natural_order(tmp_path):
    from PIL import Image

    frames = moving_square(num_frames=12)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"frame_{index}.png")  # frame_10 after frame_9, not after frame_1
    np.testing.assert_array_equal(read_video(tmp_path), frames)
    np.testing.assert_array_equal(read_video(tmp_path, frame_indices=[11, 0, 0]), frames[[11, 0, 0]])
    info = probe_video(tmp_path)
    assert (info.codec, info.num_frames, info.width, info.height) == ("images", 12, 40, 32)


def test_frame_indices_select_from_files(tmp_path):
    frames = moving_square(num_frames=4)
    path = write_video(tmp_path / "clip.gif", frames, fps=8)
    np.testing.assert_array_equal(read_video(path, frame_indices=[3, 1]), read_video(path)[[3, 1]])
    with pytest.raises(ValueError, match="Frame indices"):
        read_video(path, frame_indices=[4])


@pytest.mark.parametrize(
    "frames, message",
    [
        (np.zeros((2, 8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 3), np.uint8), r"\(F, H, W, 3\)"),
        (np.zeros((0, 8, 8, 3), np.uint8), "empty"),
    ],
)
def test_bad_frames_are_rejected_with_a_fix(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        write_video(tmp_path / "clip.mp4", frames)


def test_unknown_suffix_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=".mp4"):
        write_video(tmp_path / "clip.avi", moving_square(num_frames=2))


def test_missing_and_broken_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(FileNotFoundError):
        probe_video(tmp_path / "missing.gif")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="broken.mp4"):
        read_video(broken)
    with pytest.raises(ValueError, match="broken.mp4"):
        probe_video(broken)
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        read_video(empty)
