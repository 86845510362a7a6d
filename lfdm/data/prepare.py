"""Raw clips -> training clips framed the way a model's pictures are (`python -m lfdm prepare-videos`).

    clip_format = clip_format_of("checkpoints")                  # 64 px, 16 frames, SynthFace's face framing, 10 fps
    frames = prepare_clip(raw_frames, fps=30.0, clip_format=clip_format)   # uint8 (16, 64, 64, 3)
    report = prepare_folder("raw", "clips", clip_format)         # raw/<label>/<video> -> clips/<label>/<video>/

For every clip, in this order:

1. **One frame rate**: the clip is resampled to `clip_format.fps` by taking, for output frame k (at k / fps
   seconds), the source frame nearest in time; a slower clip repeats frames, a faster one drops them. A clip that
   does not say its rate (a folder of frames) is taken as already at that rate.
2. **The model's frame count**: the first `num_frames` frames of the resampled clip, one training clip per video.
   An action clip starts at rest and the model animates from its first frame, so the start is what it must learn;
   later windows would start mid-action. A clip shorter than that is skipped (it would have to hold its last frame).
3. **The model's framing**: a face model (`ModelFraming.kind == "face"`) has the face found and followed with the
   code that frames driving videos (`lfdm.driving.frame_driving_faces`, `lfdm.face_track`): one smoothed track, each
   frame aligned to the model's eye targets, or left as it is (resized and padded) when the clip is framed like
   the model's faces already. A whole-picture model gets every frame resized and padded to a square
   (`lfdm.data.transforms.resize_and_pad`), as the folder data set reads frames.

`prepare_clip` is a pure function of the frames, their rate and the `ClipFormat`, so preparing clips beforehand or
when they are read gives the same frames. The clips are written as folders of PNG frames (lossless: training reads
exactly these pixels; an mp4 would re-compress them), in the layout `lfdm.data.videos.VideoFolderDataset` reads,
with the framing in `framing.json` at the top, so that an autoencoder trained on them records it
(`lfdm.data.factory.dataset_framing`).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lfdm.data.factory import FRAMING_FILE
from lfdm.data.transforms import resize_and_pad
from lfdm.faces import MIN_FACE_SIDE
from lfdm.framing import ModelFraming
from lfdm.video import iter_video_frames, probe_video

logger = logging.getLogger(__name__)

DEFAULT_FPS = 10.0  # the rate of SynthFace's rendered clips (`python -m lfdm make-dataset --fps`)
# Why a clip was skipped: the file does not decode, has too few frames, shows no face, or has no label folder
SKIP_REASONS = ("unreadable", "too short", "no face", "no label")


@dataclass(frozen=True)
class ClipFormat:
    """What a model's training clips look like: `num_frames` square frames of `size` px at `fps`, framed as
    `framing` says."""

    size: int
    num_frames: int
    framing: ModelFraming
    fps: float = DEFAULT_FPS

    def __post_init__(self) -> None:
        if self.size < 8 or self.num_frames < 2 or not self.fps > 0:
            raise ValueError(
                f"a clip format needs size >= 8 px, num_frames >= 2 and fps > 0; got {self.size}, {self.num_frames}, "
                f"{self.fps}."
            )


def clip_format_of(model: str | Path, fps: float = DEFAULT_FPS) -> ClipFormat:
    """The `ClipFormat` of a pipeline folder (`checkpoints/`, a train-dm run's `model/`), read from the configs of
    its autoencoder (image size, framing) and U-Net (frame count), without loading any weights."""
    folder = Path(model)
    lfae_config, unet_config = folder / "lfae" / "config.json", folder / "unet" / "config.json"
    for path in (lfae_config, unet_config):
        if not path.is_file():
            raise FileNotFoundError(
                f"{str(folder)!r} is not a pipeline folder: it has no {path.relative_to(folder)}. Pass --model "
                "checkpoints (the shipped model) or a train-dm run's model/ folder."
            )
    lfae, unet = json.loads(lfae_config.read_text()), json.loads(unet_config.read_text())
    framing = ModelFraming.from_config(lfae.get("framing"))
    return ClipFormat(size=int(lfae["image_size"]), num_frames=int(unet["num_frames"]), framing=framing, fps=fps)


class UnusableClip(ValueError):
    """A clip that cannot become a training clip; `reason` is one of `SKIP_REASONS`, the message says what to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def resampled_indices(fps: float, clip_format: ClipFormat) -> np.ndarray:
    """int64 (num_frames,) the source frame of each output frame: output frame k is at k / clip_format.fps seconds,
    and takes the source frame nearest that time (a source rate of 0, unknown, counts as clip_format.fps)."""
    ratio = fps / clip_format.fps if fps > 0 else 1.0
    return np.floor(np.arange(clip_format.num_frames) * ratio + 0.5).astype(np.int64)


def prepare_clip(frames: Iterable[np.ndarray], fps: float, clip_format: ClipFormat) -> np.ndarray:
    """frames: uint8 (H, W, 3) RGB pictures of one size (an array (F, H, W, 3), a list or an iterator, which is read
    only as far as needed), `fps` their rate (0: unknown) -> uint8 (num_frames, size, size, 3) framed like the
    model's pictures. Raises `UnusableClip` ("too short", "no face") with what to do."""
    indices = resampled_indices(fps, clip_format)
    wanted, picked, count = set(indices.tolist()), {}, 0
    for index, frame in enumerate(frames):
        count = index + 1
        if index in wanted:
            picked[index] = np.asarray(frame)
        if index >= indices[-1]:
            break
    if count <= indices[-1]:
        rate = f"{fps:g} fps" if fps > 0 else "no frame rate (taken as --fps)"
        needs = clip_format.num_frames / clip_format.fps
        raise UnusableClip(
            "too short",
            f"too short: {count} frames at {rate}; the model's clips are {clip_format.num_frames} frames at "
            f"{clip_format.fps:g} fps ({needs:.2f} s), which needs {indices[-1] + 1} of these frames. Use a longer "
            "clip, or a higher --fps.",
        )
    if len({frame.shape for frame in picked.values()}) > 1:
        raise UnusableClip("unreadable", "its frames differ in size; export it again as one video.")
    clip = np.stack([picked[index] for index in indices])  # (num_frames, H, W, 3)
    if not clip_format.framing.is_face:
        return resize_and_pad(clip, clip_format.size)
    return _framed_faces(clip, clip_format)


def _framed_faces(clip: np.ndarray, clip_format: ClipFormat) -> np.ndarray:
    """uint8 (F, H, W, 3) -> (F, size, size, 3): the face followed and framed as a driving video's is."""
    from lfdm.driving import frame_driving_faces, load_driving_video  # torch: only for face models

    video = load_driving_video(clip, clip_format.size, max_frames=len(clip))
    try:
        faces = frame_driving_faces(video, clip_format.size, clip_format.framing)
    except ValueError as error:  # the one refusal of a face model's framing: no frame shows a face
        raise UnusableClip(
            "no face",
            f"no face: none of its {len(clip)} frames shows a face of at least {MIN_FACE_SIDE} px (drawn and cartoon "
            "faces are rarely found). Use a clip that shows one face, large and frontal, or remove it.",
        ) from error
    # (F, 3, S, S) in [0, 1] -> uint8 (F, S, S, 3)
    return (faces.frames.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).byte().numpy()


def prepare_video(path: str | Path, clip_format: ClipFormat) -> tuple[np.ndarray, float]:
    """A video file or folder of frames -> (its prepared frames, uint8 (num_frames, size, size, 3); its frame rate,
    0.0 when unknown). Raises `UnusableClip` for a file that does not decode, is too short or shows no face."""
    try:
        fps = probe_video(path).fps
        return prepare_clip(iter_video_frames(path), fps, clip_format), fps
    except UnusableClip:
        raise
    except (ValueError, OSError) as error:
        detail = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise UnusableClip(
            "unreadable",
            f"unreadable ({detail}). Export it again (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) or remove it.",
        ) from error


@dataclass
class PrepareReport:
    """What `prepare_folder` did: `kept` (source, output folder, note), `skipped` (source, reason, message),
    `warnings` (label folders with too few clips)."""

    kept: list[tuple[Path, Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as text lines, one per clip, then the warnings and a summary."""
        lines = [f"kept     {source} -> {output} ({note})" for source, output, note in self.kept]
        lines += [f"skipped  {source}: {message}" for source, _, message in self.skipped]
        lines += [f"warning: {warning}" for warning in self.warnings]
        reasons = Counter(reason for _, reason, _ in self.skipped)
        why = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        lines.append(f"{len(self.kept)} clips kept, {len(self.skipped)} skipped" + (f" ({why})" if why else ""))
        return lines


def prepare_folder(raw: str | Path, out: str | Path, clip_format: ClipFormat) -> PrepareReport:
    """Prepare every video under `raw` (`raw/<label>/.../<video>`: the first folder is the label) into
    `out/<label>/.../<video name>/` as PNG frames (`prepare_video`), and write `out/framing.json`. Clips that
    cannot be used are skipped and reported; a label with fewer than two kept clips is warned about."""
    from lfdm.data.videos import find_videos

    raw, out = Path(raw), Path(out)
    if not raw.is_dir():
        raise FileNotFoundError(f"no folder of raw clips at {str(raw)!r}; lay them out as RAW/<label>/<video>.")
    if out.resolve() == raw.resolve() or out.resolve().is_relative_to(raw.resolve()):
        raise ValueError(f"--out {str(out)!r} must be outside {str(raw)!r}: the prepared clips would be read as raw.")
    videos = find_videos(raw)
    if not videos:
        raise FileNotFoundError(f"no videos under {str(raw)!r} (mp4, GIF, ... files or folders of frames).")
    report, outputs = PrepareReport(), set()
    for path in videos:
        relative = path.relative_to(raw)
        if len(relative.parts) < 2:
            report.skipped.append((path, "no label", f"not in a label folder; move it to {raw}/<label>/."))
            continue
        try:
            frames, fps = prepare_video(path, clip_format)
        except UnusableClip as error:
            report.skipped.append((path, error.reason, str(error)))
            continue
        output = out / relative.with_suffix("") if path.is_file() else out / relative
        if output in outputs:  # take.mp4 beside take.avi
            output = output.with_name(f"{output.name}-{path.suffix.lstrip('.')}")
        outputs.add(output)
        write_frames(output, frames)
        rate = (
            "no frame rate"
            if fps <= 0
            else f"{fps:g} fps" + (" resampled" if abs(fps - clip_format.fps) > 1e-3 else "")
        )
        report.kept.append((path, output, f"{relative.parts[0]}, {rate}"))
    counts = Counter(output.relative_to(out).parts[0] for _, output, _ in report.kept)
    for label in sorted({path.relative_to(raw).parts[0] for path in videos if path.parent != raw}):
        if counts[label] < 2:
            report.warnings.append(
                f"label {label!r} has {counts[label]} usable clip{'s' if counts[label] != 1 else ''}; a model learns "
                "an action from many clips of it (tens), add more to its folder."
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / FRAMING_FILE).write_text(json.dumps(clip_format.framing.to_config(), indent=2))
    return report


def write_frames(folder: Path, frames: np.ndarray) -> None:
    """uint8 (F, H, W, 3) -> folder/00000.png, 00001.png, ... (a folder of frames `lfdm.video` reads); an earlier
    clip there is replaced."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{index:05d}.png")
