"""The Driving video tab: a picture and a driving video in, the animated picture with its flows out.

Layout and wiring only; the handler is `ui._Handlers.animate` and the work `GenerationService.animate`.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from lfdm.app import text
from lfdm.app.inputs import APP_MAX_DRIVING_FRAMES
from lfdm.app.widgets import captioned_video, example_files, motion_slider


def driving_tab(examples_dir, driving_dir) -> SimpleNamespace:
    """Animate a picture with the motion of a driving video (the autoencoder alone, no sampling)."""
    ui = SimpleNamespace()
    gr.Markdown(text.DRIVING_HELP.format(max_frames=APP_MAX_DRIVING_FRAMES))
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            ui.image = gr.Image(label="Picture", type="filepath", image_mode=None, height=220, elem_id="driving-image")
            examples = example_files(examples_dir, "*.png")
            if examples:
                gr.Examples(examples, inputs=[ui.image], label="Example pictures", examples_per_page=12)
            ui.video = gr.Video(label="Driving video", height=220, sources=["upload"], elem_id="driving-video")
            clips = example_files(driving_dir, "*.mp4")
            if clips:
                gr.Examples(clips, inputs=[ui.video], label="Example driving videos (SynthFace)")
            ui.relative = gr.Checkbox(
                label="Relative motion (keep the picture's own shape)", value=True, elem_id="relative"
            )
            ui.motion_scale = motion_slider("driving-motion-scale")
            ui.button = gr.Button("Animate", variant="primary", elem_id="animate")
        with gr.Column(scale=2):
            ui.note = gr.Markdown(elem_id="driving-note")
            with gr.Row():
                ui.result = captioned_video("Animated picture", "driving-result")
                ui.flow_video = captioned_video("Latent flow, with its colour key", "driving-flow", titled=True)
                ui.occlusion_video = captioned_video("Occlusion (white = visible)", "driving-occlusion")
            ui.panel_video = captioned_video(
                "input | animated | warped input | flow | grid | occlusion", "driving-panels", titled=True
            )
            ui.downloads = gr.File(label="Downloads: video, panels, GIF, flows (.npz)", file_count="multiple")
    return ui


def wire_driving_tab(driving: SimpleNamespace, animate, model: gr.Dropdown) -> None:
    """Animate runs `animate(image, video, model, relative, motion_scale)` in the model's queue slot, on the
    uploaded files as they are (the service opens them itself)."""
    driving.button.click(
        animate,
        [driving.image, driving.video, model, driving.relative, driving.motion_scale],
        [
            driving.result,
            driving.flow_video,
            driving.occlusion_video,
            driving.panel_video,
            driving.downloads,
            driving.note,
        ],
        api_name="animate",
        preprocess=False,
        concurrency_id="model",
        concurrency_limit=1,
    )
