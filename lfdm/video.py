"""Video files: write browser-playable H.264 mp4 and GIF, read mp4 / GIF / folders of frames, probe.

Frames are numpy uint8 arrays (F, H, W, 3), RGB. Everything goes through the ffmpeg binary bundled with
imageio-ffmpeg, so no system ffmpeg and no OpenCV video codecs are needed. (OpenCV's `mp4v` files do not play in
browsers; H.264 in yuv420p with the index at the front of the file does.)
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageSequence

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# Containers ffmpeg decodes; `.gif` is read with Pillow so that per-frame delays and duplicate frames survive.
VIDEO_SUFFIXES = (".mp4", ".gif", ".avi", ".mov", ".mkv", ".webm", ".m4v")

# x264 constant rate factor: 0 is lossless, 23 is ffmpeg's default; 18 is visually lossless for small clips.
_H264_CRF = 18


@dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` finds.

    Attributes:
        codec: ffmpeg's codec name (`"h264"`, `"gif"`, ...), or `"images"` for a folder of frames.
        num_frames: number of frames.
        width, height: frame size in pixels.
        fps: frames per second; 0.0 when the source does not say (a folder of frames).
    """

    codec: str
    num_frames: int
    width: int
    height: int
    fps: float


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(
            f"`frames` must be uint8 in [0, 255]; got dtype {frames.dtype}. "
            "Convert with `(frames * 255).round().clip(0, 255).astype(np.uint8)` for [0, 1] floats."
        )
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"`frames` must have shape (F, H, W, 3); got {frames.shape}.")
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise ValueError(f"`frames` is empty: shape {frames.shape}. Pass at least one frame of at least 1x1 pixels.")
    return frames


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    """Pad (F, H, W, 3) on the bottom / right by repeating the edge so H and W are even.

    yuv420p stores colour at half resolution, so H.264 needs even sizes; padding keeps every pixel where it was
    instead of letting ffmpeg rescale the whole picture.
    """
    pad_h = frames.shape[1] % 2
    pad_w = frames.shape[2] % 2
    if pad_h or pad_w:
        logger.debug("padding frames %s by (%d, %d) pixels for H.264", frames.shape, pad_h, pad_w)
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def _encode(path: Path, frames: np.ndarray, fps: float, codec: str, pix_fmt_out: str, output_params: list) -> None:
    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=Fraction(fps).limit_denominator(1001),
        codec=codec,
        pix_fmt_in="rgb24",
        pix_fmt_out=pix_fmt_out,
        quality=None,  # rate control is set explicitly in `output_params`
        macro_block_size=1,  # never let imageio-ffmpeg rescale; sizes are already valid
        ffmpeg_log_level="error",
        output_params=output_params,
    )
    writer.send(None)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()


def write_video(path: str | Path, frames: np.ndarray, fps: float = 8) -> Path:
    """Write frames to `path` (`.mp4` or `.gif`, chosen by the suffix) and return the path.

    `.mp4`: H.264 (libx264, CRF 18), yuv420p, `+faststart` (index first, so browsers start playing at once).
    Odd heights or widths are padded by one repeated edge row / column to be even.
    `.gif`: a palette per frame (exact for frames with at most 256 colours), loops forever; GIF delays are in
    1/100 s, so frame times are rounded to that.

    Args:
        path: output file; parent folders are created.
        frames: uint8 (F, H, W, 3) RGB.
        fps: frames per second, > 0.
    """
    path = Path(path)
    frames = _check_frames(frames)
    if not fps > 0:
        raise ValueError(f"`fps` must be positive; got {fps}.")
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".mp4":
        params = ["-crf", str(_H264_CRF), "-preset", "medium", "-movflags", "+faststart"]
        _encode(path, _pad_to_even(frames), fps, "libx264", "yuv420p", params)
    elif suffix == ".gif":
        # One palette per frame (`stats_mode=single` + `new=1`) and no dithering: flow pictures stay clean.
        palette = (
            "split[a][b];[a]palettegen=stats_mode=single:reserve_transparent=0[p];[b][p]paletteuse=new=1:dither=none"
        )
        _encode(path, frames, fps, "gif", "pal8", ["-vf", palette, "-loop", "0"])
    else:
        raise ValueError(f"Cannot write {path}: the suffix must be `.mp4` or `.gif`; got {path.suffix!r}.")
    return path


def _natural_key(path: Path) -> list:
    """Sort key that orders `frame_2.png` before `frame_10.png`."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_frame_files(folder: str | Path) -> list[Path]:
    """The image files of a folder of frames, in natural order (`2.png` before `10.png`).

    Raises:
        FileNotFoundError: the folder does not exist or holds no image files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No folder of frames at {folder}.")
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    files.sort(key=_natural_key)
    if not files:
        raise FileNotFoundError(f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
    return files


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"Cannot decode the image {path}; is the file complete?")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_gif(path: Path) -> list[np.ndarray]:
    with Image.open(path) as image:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]


def _read_ffmpeg(path: Path) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        meta = reader.__next__()
    except (RuntimeError, OSError) as error:
        reader.close()
        last_line = str(error).strip().splitlines()[-1:] or ["no output"]
        raise ValueError(f"ffmpeg cannot read {path}: {last_line[0]}") from error
    width, height = meta["size"]
    frames = [np.frombuffer(buffer, np.uint8).reshape(height, width, 3) for buffer in reader]
    return frames


def _select(frames: list[np.ndarray], frame_indices: Sequence[int] | None, path: Path) -> list[np.ndarray]:
    if frame_indices is None:
        return frames
    if len(frames) == 0:
        return frames
    indices = np.asarray(frame_indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= len(frames)):
        raise ValueError(
            f"Frame indices must be in [0, {len(frames)}) for {path}; got {indices.min()}..{indices.max()}."
        )
    return [frames[i] for i in indices]


def read_video(path: str | Path, *, frame_indices: Sequence[int] | None = None) -> np.ndarray:
    """Read a video file (mp4 and anything ffmpeg decodes, GIF) or a folder of frames.

    Args:
        path: a video file, or a folder of image files (read in natural order).
        frame_indices: read only these frames (any order, repeats allowed); a folder of frames then decodes only
            the files it needs.

    Returns:
        uint8 (F, H, W, 3) RGB.

    Raises:
        FileNotFoundError: nothing at `path`.
        ValueError: the file cannot be decoded, holds no frames, or an index is out of range.
    """
    path = Path(path)
    if path.is_dir():
        files = list_frame_files(path)
        frames = [_read_image(file) for file in _select(files, frame_indices, path)]
    elif path.is_file():
        if path.suffix.lower() == ".gif":
            frames = _read_gif(path)
        else:
            frames = _read_ffmpeg(path)
        frames = _select(frames, frame_indices, path)
    else:
        raise FileNotFoundError(f"No video file or folder of frames at {path}.")
    if not frames:
        raise ValueError(f"{path} holds no frames.")
    if len({frame.shape for frame in frames}) > 1:
        raise ValueError(f"The frames of {path} differ in size: {sorted({frame.shape for frame in frames})}.")
    return np.stack(frames)


def _probe_ffmpeg(path: Path) -> VideoInfo:
    # Stream copy into the null muxer counts packets without decoding, so this is fast for long files too.
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v:0", "-c", "copy"]
    result = subprocess.run([*command, "-f", "null", "-"], capture_output=True, text=True, check=False)
    stream = re.search(r"Stream #\S+.*?: Video: (\w+).*?, (\d+)x(\d+)", result.stderr)
    if result.returncode != 0 or stream is None:
        last_line = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ValueError(f"ffmpeg cannot read a video stream from {path}: {last_line[0]}")
    counts = re.findall(r"frame=\s*(\d+)", result.stderr)
    fps = re.search(r", ([\d.]+) fps", stream.string[stream.start() :])
    return VideoInfo(
        codec=stream.group(1),
        num_frames=int(counts[-1]) if counts else 0,
        width=int(stream.group(2)),
        height=int(stream.group(3)),
        fps=float(fps.group(1)) if fps else 0.0,
    )


def _probe_gif(path: Path) -> VideoInfo:
    try:
        with Image.open(path) as image:
            durations = [frame.info.get("duration", 0) for frame in ImageSequence.Iterator(image)]
            width, height = image.size
    except OSError as error:
        raise ValueError(f"Cannot read the GIF {path}: {error}") from error
    mean_ms = float(np.mean(durations)) if durations else 0.0
    return VideoInfo("gif", len(durations), width, height, 1000.0 / mean_ms if mean_ms > 0 else 0.0)


def probe_video(path: str | Path) -> VideoInfo:
    """Codec, frame count, size and frame rate of a video file or a folder of frames.

    Raises:
        FileNotFoundError: nothing at `path`.
        ValueError: not a readable video.
    """
    path = Path(path)
    if path.is_dir():
        files = list_frame_files(path)
        height, width = _read_image(files[0]).shape[:2]
        return VideoInfo("images", len(files), width, height, 0.0)
    if not path.is_file():
        raise FileNotFoundError(f"No video file or folder of frames at {path}.")
    if path.suffix.lower() == ".gif":
        return _probe_gif(path)
    return _probe_ffmpeg(path)


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """The frames of a video file or folder of frames one at a time, uint8 (H, W, 3) RGB, each decoded when it is
    asked for: stopping early stops decoding, so a long video can be sampled from without holding it in memory.

    Raises:
        FileNotFoundError: nothing at `path`.
        ValueError: the file cannot be decoded.
    """
    path = Path(path)
    if path.is_dir():
        for file in list_frame_files(path):
            yield _read_image(file)
        return
    if not path.is_file():
        raise FileNotFoundError(f"No video file or folder of frames at {path}.")
    if path.suffix.lower() == ".gif":
        try:
            with Image.open(path) as image:
                for frame in ImageSequence.Iterator(image):
                    yield np.asarray(frame.convert("RGB"))
        except OSError as error:
            raise ValueError(f"Cannot read the GIF {path}: {error}") from error
        return
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        try:
            meta = reader.__next__()
        except (RuntimeError, OSError, StopIteration) as error:
            last_line = str(error).strip().splitlines()[-1:] or ["no output"]
            raise ValueError(f"ffmpeg cannot read {path}: {last_line[0]}") from error
        width, height = meta["size"]
        for buffer in reader:
            yield np.frombuffer(buffer, np.uint8).reshape(height, width, 3)
    finally:
        reader.close()  # stops the ffmpeg process when the caller stops early
