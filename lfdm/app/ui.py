"""The page: `build_demo(service) -> gr.Blocks`. Layout and wiring only; the work is `GenerationService`'s.

Handlers are a few lines each. `GenerationService` raises `UserInputError` / `GenerationStopped` for what a person
can cause; `_shown_errors` turns them into `gr.Error` with the same plain message, and logs anything else as a bug
before showing a short apology, so a failing request never takes the app down.
"""

from __future__ import annotations

import functools
import logging
import random
from pathlib import Path

import gradio as gr

from lfdm.app import text
from lfdm.app.inputs import (
    DEFAULT_SCHEDULER,
    FPS_RANGE,
    GUIDANCE_RANGE,
    SCHEDULERS,
    SEED_MAX,
    STEPS_RANGE,
    GenerationSettings,
    UserInputError,
)
from lfdm.app.models import NO_MODEL_MESSAGE
from lfdm.app.service import GenerationService, GenerationStopped
from lfdm.schedulers import DEFAULT_STEPS
from lfdm.viz import color_wheel_legend

try:  # ZeroGPU Spaces attach a GPU only while a function decorated with `spaces.GPU` runs
    import spaces
except ImportError:
    spaces = None

logger = logging.getLogger(__name__)

QUEUE_SIZE = 32  # requests waiting beyond this are turned away with "the queue is full"
GPU_SECONDS = 120  # ZeroGPU time asked for one request (1000 DDPM steps take about a minute on a GPU)
# Keyword arguments of `demo.launch` that every launch uses (app.py, tests): no files served beyond what handlers
# return, uploads capped, no server-side rendering (it would need Node.js and a second server).
_PROGRESS = gr.Progress()  # the default that marks a handler's progress argument; each event gets its own tracker
LAUNCH_OPTIONS = {"max_file_size": "20mb", "ssr_mode": False, "show_error": False}


def _on_gpu(fn):
    return spaces.GPU(duration=GPU_SECONDS)(fn) if spaces is not None else fn


def _shown_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UserInputError as error:
            raise gr.Error(_sentence(str(error)), title="Please check the input", print_exception=False) from None
        except GenerationStopped as error:
            raise gr.Error(_sentence(str(error)), title="Stopped", print_exception=False) from None
        except Exception:
            logger.exception("%s failed", fn.__name__)
            raise gr.Error("Something went wrong on the server (it is logged). Please try again.") from None

    return wrapper


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


def _image_path(payload) -> str | None:
    """The generate events skip Gradio's image decoding (so that this app opens uploads itself, safely): they get
    the uploaded file's record, whose `path` lies in Gradio's upload folder."""
    if isinstance(payload, dict):
        return payload.get("path")
    return payload


def _example_images(folder: Path | None) -> list[list[str]]:
    if folder is None or not Path(folder).is_dir():
        return []
    return [[str(path)] for path in sorted(Path(folder).glob("*.png"))]


def build_demo(service: GenerationService, *, examples_dir: str | Path | None = None) -> gr.Blocks:
    """The whole app around `service`; `demo.queue(...)` is applied, `launch` is the caller's."""
    settings_of = lambda label, model, scheduler, steps, guidance, seed, fps: GenerationSettings(  # noqa: E731
        label=label, model=model, scheduler=scheduler, steps=steps, guidance_scale=guidance, seed=seed, fps=fps
    )

    @_shown_errors
    def generate(image, label, model, scheduler, steps, guidance, seed, fps, request: gr.Request, progress=_PROGRESS):
        settings = settings_of(label, model, scheduler, steps, guidance, seed, fps)
        result = service.generate(
            _image_path(image),
            settings,
            session=_session(request),
            progress=lambda fraction, what: progress(fraction, desc=what),
        )
        last = result.num_trace_steps
        # Gradio needs maximum > minimum; a 1-step run gets a slider that `inspect` clamps to its one step.
        slider = gr.Slider(minimum=1, maximum=max(last, 2), value=last, step=1, interactive=last > 1)
        files = [str(path) for path in result.downloads]
        return (
            str(result.video),
            str(result.flow_video),
            str(result.occlusion_video),
            str(result.panel_video),
            files,
            slider,
            result.request_id,
        )

    @_shown_errors
    def compare(image, model, scheduler, steps, guidance, seed, fps, request: gr.Request, progress=_PROGRESS):
        settings = settings_of(None, model, scheduler, steps, guidance, seed, fps)
        result = service.compare(
            _image_path(image),
            settings,
            session=_session(request),
            progress=lambda fraction, what: progress(fraction, desc=what),
        )
        return str(result.video), [str(path) for path in result.downloads]

    @_shown_errors
    def show_step(request_id, step, as_videos, fps):
        view = service.inspect(request_id, step, videos=as_videos, fps=fps)
        videos = [str(view.flow_video), str(view.occlusion_video)] if as_videos else [None, None]
        return view.caption, view.flow_strip, view.occlusion_strip, gr.Row(visible=as_videos), *videos

    def stop(request: gr.Request):
        service.stop(_session(request))

    @_shown_errors
    def choose_model(model):
        labels = service.labels(model)
        return gr.Dropdown(choices=labels, value=labels[0] if labels else None), service.describe(model)

    @_shown_errors
    def page_loaded():
        return choose_model(service.default_model) if service.has_model else (gr.Dropdown(), NO_MODEL_MESSAGE)

    with gr.Blocks(title=text.TITLE, analytics_enabled=False, delete_cache=(900, 3600)) as demo:
        request_id = gr.State(None)
        gr.Markdown(text.HEADER)
        if not service.has_model:
            gr.Markdown(NO_MODEL_MESSAGE, elem_id="no-model")
        with gr.Tabs():
            with gr.Tab("Generate"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=320):
                        image = gr.Image(
                            label="Image",
                            type="filepath",
                            image_mode=None,
                            height=280,
                            sources=["upload", "clipboard"],
                            elem_id="input-image",
                        )
                        examples = _example_images(examples_dir)
                        if examples:
                            gr.Examples(examples, inputs=[image], label="Examples", examples_per_page=12)
                        label = gr.Dropdown(label="Action", choices=[], value=None, elem_id="label")
                        with gr.Row():
                            generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
                            stop_button = gr.Button("Stop", variant="stop", elem_id="stop")
                        with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                            model = gr.Dropdown(
                                label="Model (every pipeline folder under checkpoints/)",
                                choices=list(service.models),
                                value=service.default_model,
                            )
                            scheduler = gr.Dropdown(
                                label="Scheduler", choices=list(SCHEDULERS), value=DEFAULT_SCHEDULER
                            )
                            steps = gr.Slider(
                                *STEPS_RANGE,
                                value=DEFAULT_STEPS[SCHEDULERS[DEFAULT_SCHEDULER]],
                                step=1,
                                label="Sampling steps",
                                elem_id="steps",
                            )
                            guidance = gr.Slider(
                                *GUIDANCE_RANGE,
                                value=1.0,
                                step=0.1,
                                label="Guidance scale",
                                info="1 = plain conditional sampling, as in the paper",
                            )
                            with gr.Row(equal_height=True):
                                seed = gr.Number(
                                    label="Seed", value=0, precision=0, minimum=0, maximum=SEED_MAX, scale=3
                                )
                                dice = gr.Button("Random seed", scale=1)
                            fps = gr.Slider(*FPS_RANGE, value=8, step=1, label="Output frames per second")
                            model_info = gr.Markdown()
                    with gr.Column(scale=2):
                        with gr.Row():
                            video = gr.Video(label="Generated video", autoplay=True, loop=True, elem_id="video")
                            flow_video = gr.Video(
                                label="Latent flow, with its colour key", autoplay=True, loop=True, elem_id="flow-video"
                            )
                            occlusion_video = gr.Video(
                                label="Occlusion (white = visible)", autoplay=True, loop=True, elem_id="occlusion-video"
                            )
                        panel_video = gr.Video(
                            label="input | generated | warped input | flow | grid | occlusion",
                            autoplay=True,
                            loop=True,
                            elem_id="panel-video",
                        )
                        downloads = gr.File(
                            label="Downloads: video, panels, GIF, flows (.npz), every step (.npz)",
                            file_count="multiple",
                            elem_id="downloads",
                        )
                with gr.Accordion("Step inspector", open=True):
                    gr.Markdown(text.INSPECTOR_HELP)
                    with gr.Row(equal_height=True):
                        step = gr.Slider(
                            1,
                            2,
                            value=1,
                            step=1,
                            label="Sampling step",
                            interactive=False,
                            elem_id="step-slider",
                            scale=4,
                        )
                        as_videos = gr.Checkbox(label="Also as videos", value=False, scale=1)
                    step_caption = gr.Markdown(elem_id="step-caption")
                    with gr.Row():
                        flow_strip = gr.Image(
                            label="Predicted flow at this step",
                            format="png",
                            interactive=False,
                            elem_id="flow-strip",
                            scale=4,
                        )
                        gr.Image(
                            color_wheel_legend(128),
                            label="Colour key",
                            format="png",
                            interactive=False,
                            scale=1,
                            min_width=140,
                        )
                    occlusion_strip = gr.Image(
                        label="Predicted occlusion at this step",
                        format="png",
                        interactive=False,
                        elem_id="occlusion-strip",
                    )
                    with gr.Row(visible=False) as step_videos:
                        step_flow_video = gr.Video(label="Flow at this step", autoplay=True, loop=True)
                        step_occlusion_video = gr.Video(label="Occlusion at this step", autoplay=True, loop=True)
            with gr.Tab("Compare"):
                gr.Markdown(text.COMPARE_HELP)
                with gr.Row():
                    compare_button = gr.Button("Generate every action", variant="primary", elem_id="compare")
                    compare_stop = gr.Button("Stop", variant="stop")
                compare_video = gr.Video(label="Every action", autoplay=True, loop=True, elem_id="compare-video")
                compare_files = gr.File(label="Downloads", file_count="multiple")
            with gr.Tab("About"):
                gr.Markdown(text.ABOUT)

        common = [model, scheduler, steps, guidance, seed, fps]
        step_outputs = [step_caption, flow_strip, occlusion_strip, step_videos, step_flow_video, step_occlusion_video]
        generating = generate_button.click(
            _on_gpu(generate),
            [image, label, *common],
            [video, flow_video, occlusion_video, panel_video, downloads, step, request_id],
            api_name="generate",
            preprocess=False,
            concurrency_id="model",
            concurrency_limit=1,
        )
        generating.success(
            show_step, [request_id, step, as_videos, fps], step_outputs, queue=False, api_visibility="private"
        )
        comparing = compare_button.click(
            _on_gpu(compare),
            [image, *common],
            [compare_video, compare_files],
            api_name="compare",
            preprocess=False,
            concurrency_id="model",
            concurrency_limit=1,
        )
        for button in (stop_button, compare_stop):
            button.click(stop, None, None, cancels=[generating, comparing], queue=False, api_visibility="private")
        for change in (step.input, as_videos.input):
            change(
                show_step,
                [request_id, step, as_videos, fps],
                step_outputs,
                queue=False,
                trigger_mode="always_last",
                api_visibility="private",
            )
        dice.click(lambda: random.randint(0, SEED_MAX), None, seed, queue=False, api_visibility="private")
        scheduler.input(
            lambda name: DEFAULT_STEPS[SCHEDULERS[name]], scheduler, steps, queue=False, api_visibility="private"
        )
        model.input(choose_model, model, [label, model_info], api_visibility="private")
        demo.load(page_loaded, None, [label, model_info], api_visibility="private")
    return demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)


def _session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)
