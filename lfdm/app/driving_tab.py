"""The Driving video tab: a picture and a driving video in, the animated picture with its flows out.

Layout and wiring only; the handler is `ui._Handlers.animate` and the work `GenerationService.animate`.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from lfdm.app import text
from lfdm.app.layout import stop_button
from lfdm.app.widgets import captioned_video, driving_clips, example_files, motion_slider
from lfdm.driving import MAX_DRIVING_FRAMES


def driving_tab(examples_dir, driving_dir) -> SimpleNamespace:
    """Animate a picture with the motion of a driving video (the autoencoder alone, no sampling)."""
    ui = SimpleNamespace()
    gr.Markdown(text.DRIVING_HELP.format(max_frames=MAX_DRIVING_FRAMES))
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            ui.image = gr.Image(label="Picture", type="filepath", image_mode=None, height=220, elem_id="driving-image")
            ui.find_face = gr.Checkbox(  # hidden for a whole-picture model (`_Handlers.choose_model`)
                label="Find the face",
                value=True,
                info="animate the picture's largest face and paste it back; off: the whole picture",
                elem_id="driving-find-face",
            )
            examples = example_files(examples_dir, "*.png")
            if examples:
                gr.Examples(examples, inputs=[ui.image], label="Example pictures", examples_per_page=12)
            ui.video = gr.Video(
                label="Driving video", height=220, sources=["upload", "webcam"], elem_id="driving-video"
            )
            ui.clips = driving_clips(driving_dir)
            ui.clip_gallery = None
            if ui.clips:
                ui.clip_gallery = gr.Gallery(
                    [(str(clip.thumbnail), clip.name) for clip in ui.clips],
                    label="Example driving videos (click one to use it)",
                    columns=2,  # wide enough tiles for the names under the thumbnails
                    height=420,
                    object_fit="contain",
                    allow_preview=False,
                    buttons=[],
                    interactive=False,
                    elem_id="driving-clips",
                )
            ui.driving_face = gr.Checkbox(  # hidden for a whole-picture model, like Find the face
                label="Find the driving face",
                value=True,
                info="follow the face in every driving frame and frame it like the model's faces, so that the "
                "camera's motion is not carried over; off: the driving frames as they are",
                elem_id="driving-face",
            )
            ui.relative = gr.Checkbox(
                label="Relative motion (keep the picture's own shape)", value=True, elem_id="relative"
            )
            ui.motion_scale = motion_slider("driving-motion-scale")
            with gr.Row():
                ui.button = gr.Button("Animate", variant="primary", elem_id="animate", scale=3)
                ui.stop = stop_button("driving-stop")
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


def wire_driving_tab(driving: SimpleNamespace, animate, stop, model: gr.Dropdown) -> None:
    """Animate runs `animate(image, video, model, relative, motion_scale, driving_face, find_face)` in the model's
    queue slot, on the uploaded files as they are (the service opens them itself); the switches come last, so that
    API calls written before them keep working. Stop (`stop(request)`) is on while it runs. A click on an example
    clip's thumbnail puts that clip in the video input."""
    private = dict(queue=False, api_visibility="private")
    animating = driving.button.click(lambda: gr.Button(interactive=True), None, driving.stop, **private).then(
        animate,
        [
            driving.image,
            driving.video,
            model,
            driving.relative,
            driving.motion_scale,
            driving.driving_face,
            driving.find_face,
        ],
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
    idle = lambda: gr.Button(interactive=False)
    driving.stop.click(stop, None, None, cancels=[animating], **private)
    driving.stop.click(idle, None, driving.stop, **private)
    animating.then(idle, None, driving.stop, **private)
    if driving.clip_gallery is not None:
        files = [str(clip.file) for clip in driving.clips]
        driving.clip_gallery.select(_choose_clip(files), None, driving.video, **private)


def _choose_clip(files: list[str]):
    """The gallery's select handler: the clip whose thumbnail was clicked (the gallery lists them in order)."""

    def choose(event: gr.SelectData) -> str:
        return files[event.index]

    return choose
