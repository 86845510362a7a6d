"""Small pieces the tabs share: the motion strength slider, example rows and videos with their caption above."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from lfdm.app.inputs import MOTION_SCALE_RANGE


def motion_slider(elem_id: str) -> gr.Slider:
    """The motion strength slider (`motion_scale`), on the Generate and the Driving video tabs."""
    low, high = MOTION_SCALE_RANGE
    return gr.Slider(
        low,
        high,
        value=1.0,
        step=0.1,
        label="Motion strength",
        info=f"{low:g} = still picture, 1 = as made, 2 = twice, up to {high:g}",
        elem_id=elem_id,
    )


def example_files(folder: Path | None, pattern: str) -> list[list[str]]:
    """One example row per file of `folder` matching `pattern`, sorted; none without the folder."""
    if folder is None or not Path(folder).is_dir():
        return []
    return [[str(path)] for path in sorted(Path(folder).glob(pattern))]


@dataclass(frozen=True)
class DrivingClip:
    """An example driving video: its file, the name that says what it shows, and its own thumbnail."""

    file: Path
    name: str
    thumbnail: Path


def driving_clips(folder: Path | None) -> list[DrivingClip]:
    """The example driving videos listed in `folder`/clips.json (file, name, thumbnail: file names in `folder`),
    in its order; entries whose files are missing are left out. None without the folder or its list."""
    listing = None if folder is None else Path(folder) / "clips.json"
    if listing is None or not listing.is_file():
        return []
    clips = []
    for entry in json.loads(listing.read_text()):
        clip = DrivingClip(folder / entry["file"], entry["name"], folder / entry["thumbnail"])
        if clip.file.is_file() and clip.thumbnail.is_file():
            clips.append(clip)
    return clips


def captioned_video(label: str, elem_id: str | None = None, *, titled: bool = False) -> gr.Video:
    """A looping video with its caption above it, not on it: Gradio's label floats over the top left of the video
    and its download button over the top right, where the flow, panel and Compare videos draw their titles
    (`titled`: no button; the Downloads list has the files). The caption's elem_id is `elem_id` + "-caption"."""
    with gr.Column(min_width=160):
        gr.Markdown(f"**{label}**", elem_id=None if elem_id is None else f"{elem_id}-caption", elem_classes="caption")
        return gr.Video(
            label=label,
            show_label=False,
            autoplay=True,
            loop=True,
            elem_id=elem_id,
            buttons=[] if titled else None,
        )
