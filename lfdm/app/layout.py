"""The Generate and Compare tabs' layout: the inputs column, the results column, the step inspector, the Compare
tab. Layout only; `lfdm.app.ui` wires the events."""

from __future__ import annotations

import base64
import io
from types import SimpleNamespace

import gradio as gr
from PIL import Image

from lfdm.app import text
from lfdm.app.inputs import DEFAULT_SCHEDULER, FPS_RANGE, GUIDANCE_RANGE, SCHEDULERS, SEED_MAX, STEPS_RANGE
from lfdm.app.service import GenerationService
from lfdm.app.widgets import captioned_video, example_files, motion_slider
from lfdm.schedulers import DEFAULT_STEPS
from lfdm.viz import color_wheel_legend


def stop_button(elem_id: str) -> gr.Button:
    """Stop: small and secondary beside the action it stops, and active only while that runs (the wiring turns
    it on at the start and off at the end)."""
    return gr.Button("Stop", variant="secondary", size="sm", interactive=False, elem_id=elem_id, scale=1, min_width=80)


def inputs_column(service: GenerationService, examples_dir) -> SimpleNamespace:
    """The left column of the Generate tab: image, examples, action, buttons and the Advanced accordion."""
    ui = SimpleNamespace()
    ui.image = gr.Image(
        label="Image",
        type="filepath",
        image_mode=None,
        height=280,
        sources=["upload", "webcam", "clipboard"],
        elem_id="input-image",
    )
    ui.find_face = gr.Checkbox(
        label="Find the face",
        value=True,
        info="animate the largest face, framed like the model's training faces, and paste it back into the photo; "
        "off: the whole picture",
        elem_id="find-face",
    )
    with gr.Row():
        ui.face_preview = gr.Image(
            label="The face to animate", format="png", interactive=False, height=180, elem_id="face-preview"
        )
    ui.face_note = gr.Markdown(elem_id="face-note")  # what was found, or what is wrong with the file, at upload
    examples = example_files(examples_dir, "*.png")
    if examples:
        gr.Examples(examples, inputs=[ui.image], label="Examples", examples_per_page=12)
    # filled from the model, which also says which action to select first (`GenerationService.default_label`)
    ui.label = gr.Dropdown(label="Action", choices=[], value=None, elem_id="label")
    ui.quality = gr.Radio(  # choices and value come from the model when the page loads
        label="Quality",
        choices=[],
        value=None,
        info="the model's own default first; the paper's 1000 DDPM steps take minutes on a CPU",
        elem_id="quality",
    )
    with gr.Row():
        ui.num_frames = gr.Slider(
            16,
            64,
            value=16,
            step=1,
            label="Video length (frames)",
            info="beyond the model's clip, clips are chained",
            elem_id="num-frames",
        )
        ui.motion_scale = motion_slider("motion-scale")
    with gr.Row():
        ui.generate = gr.Button("Generate", variant="primary", elem_id="generate", scale=3)
        ui.stop = stop_button("stop")
    with gr.Accordion("Advanced", open=False, elem_id="advanced"):
        ui.model = gr.Dropdown(
            label="Model (every pipeline folder under checkpoints/)",
            choices=list(service.models),
            value=service.default_model,
        )
        ui.scheduler = gr.Dropdown(label="Scheduler", choices=list(SCHEDULERS), value=DEFAULT_SCHEDULER)
        ui.steps = gr.Slider(
            *STEPS_RANGE,
            value=DEFAULT_STEPS[SCHEDULERS[DEFAULT_SCHEDULER]],
            step=1,
            label="Sampling steps",
            elem_id="steps",
        )
        ui.guidance = gr.Slider(
            *GUIDANCE_RANGE,
            value=1.0,
            step=0.1,
            label="Guidance scale",
            info="1 = plain conditional sampling, as in the paper",
        )
        with gr.Row(equal_height=True):
            ui.seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=SEED_MAX, scale=3)
            ui.dice = gr.Button("Random seed", scale=1)
        ui.fps = gr.Slider(*FPS_RANGE, value=8, step=1, label="Output frames per second")
        ui.model_info = gr.Markdown()
    return ui


def results_column() -> SimpleNamespace:
    """The right column of the Generate tab: the three videos side by side, the panel video, the downloads."""
    ui = SimpleNamespace()
    with gr.Row():
        ui.video = captioned_video("Generated video", "video")
        ui.flow_video = captioned_video("Latent flow, with its colour key", "flow-video", titled=True)
        ui.occlusion_video = captioned_video("Occlusion (white = visible)", "occlusion-video")
    ui.run_note = gr.Markdown(elem_id="run-note")  # how long the video will take, then how long it took
    ui.panel_video = captioned_video(
        "input | generated | warped input | flow | grid | occlusion", "panel-video", titled=True
    )
    ui.downloads = gr.File(
        label="Downloads: video, panels, GIF, flows (.npz), every step (.npz)",
        file_count="multiple",
        elem_id="downloads",
    )
    return ui


def inspector() -> SimpleNamespace:
    """The step inspector: a slider over the traced sampling steps and that step's flow and occlusion strips, the
    latent cells drawn as blocks (the results above show them smoothly upsampled)."""
    ui = SimpleNamespace()
    gr.Markdown(text.INSPECTOR_HELP)
    with gr.Row(equal_height=True):
        ui.step = gr.Slider(
            1, 2, value=1, step=1, label="Sampling step", interactive=False, elem_id="step-slider", scale=4
        )
        ui.as_videos = gr.Checkbox(label="Also as videos", value=False, scale=1)
    ui.caption = gr.Markdown(elem_id="step-caption")
    with gr.Row():
        ui.flow_strip = gr.Image(
            label="Predicted flow at this step", format="png", interactive=False, elem_id="flow-strip", scale=4
        )
        gr.HTML(_colour_key_html(128), label="Colour key", scale=1, min_width=140, elem_id="colour-key")
    ui.occlusion_strip = gr.Image(
        label="Predicted occlusion at this step", format="png", interactive=False, elem_id="occlusion-strip"
    )
    with gr.Row(visible=False) as ui.videos_row:
        ui.flow_video = captioned_video("Flow at this step", titled=True)
        ui.occlusion_video = captioned_video("Occlusion at this step")
    ui.outputs = [ui.caption, ui.flow_strip, ui.occlusion_strip, ui.videos_row, ui.flow_video, ui.occlusion_video]
    return ui


def compare_tab() -> SimpleNamespace:
    ui = SimpleNamespace()
    gr.Markdown(text.COMPARE_HELP)
    with gr.Row():
        ui.button = gr.Button("Generate every action", variant="primary", elem_id="compare", scale=3)
        ui.stop = stop_button("compare-stop")
    ui.note = gr.Markdown(elem_id="compare-note")  # how long it will take
    ui.video = captioned_video("Every action (the face of each, large enough to judge)", "compare-video", titled=True)
    ui.files = gr.File(label="Downloads", file_count="multiple")
    return ui


def _colour_key_html(size: int) -> str:
    """The flow colour key as an inline PNG: a file in Gradio's temporary folder could be cleaned away by others."""
    png = io.BytesIO()
    Image.fromarray(color_wheel_legend(size)).save(png, format="PNG")
    data = base64.b64encode(png.getvalue()).decode("ascii")
    alt = "Colour key: the direction of a displacement is the hue, its length the saturation"
    return f'<img src="data:image/png;base64,{data}" alt="{alt}" width="{size}">'
