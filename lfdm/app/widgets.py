"""Small pieces the tabs share: the motion strength slider, example rows and videos with their caption above."""

from __future__ import annotations

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
