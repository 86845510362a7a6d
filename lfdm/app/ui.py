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

from lfdm.app import layout, text
from lfdm.app.driving_tab import driving_tab, wire_driving_tab
from lfdm.app.inputs import MAX_UPLOAD_BYTES, SEED_MAX, DrivingSettings, GenerationSettings, UserInputError, preset_of
from lfdm.app.models import NO_MODEL_MESSAGE
from lfdm.app.runs import GenerationStopped
from lfdm.app.service import GenerationService

try:  # ZeroGPU Spaces attach a GPU only while a function decorated with `spaces.GPU` runs
    import spaces
except ImportError:
    spaces = None

logger = logging.getLogger(__name__)

QUEUE_SIZE = 32  # requests waiting beyond this are turned away with "the queue is full"
GPU_SECONDS = 120  # ZeroGPU time asked for one request (1000 DDPM steps take about a minute on a GPU)
_PROGRESS = gr.Progress()  # the default that marks a handler's progress argument; each event gets its own tracker
# Keyword arguments of `demo.launch` that every launch uses (app.py, tests): no files served beyond what handlers
# return, uploads capped, no server-side rendering (it would need Node.js and a second server). The cap is above the
# app's own limit (`MAX_UPLOAD_BYTES`), so that a picture over that limit still arrives and its message shows beside
# the picture; Gradio refuses larger files itself, with a message in a corner of the page.
# The example clips' names are sentences ("surprise, real face (astronaut), handheld camera"): Gradio cuts a gallery
# caption to one line with an ellipsis, so these wrap across the tile's foot instead.
APP_CSS = "#driving-clips .caption-label { white-space: normal; max-width: none; left: var(--block-label-margin); }"
LAUNCH_OPTIONS = {"max_file_size": 4 * MAX_UPLOAD_BYTES, "ssr_mode": False, "show_error": False, "css": APP_CSS}


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


class _Handlers:
    """The event handlers: each turns widget values into one `GenerationService` call and its result into
    widget values."""

    def __init__(self, service: GenerationService):
        self.service = service

    @_shown_errors
    def generate(
        self,
        image,
        label,
        model,
        scheduler,
        steps,
        guidance,
        seed,
        fps,
        find_face=True,
        num_frames=None,
        motion_scale=1.0,
        request: gr.Request = None,
        progress=_PROGRESS,
    ):
        settings = GenerationSettings(
            label=label, model=model, scheduler=scheduler, steps=steps, guidance_scale=guidance, seed=seed, fps=fps,
            num_frames=num_frames, motion_scale=motion_scale, find_face=find_face,
        )  # fmt: skip
        result = self.service.generate(
            _image_path(image),
            settings,
            session=_session(request),
            progress=lambda fraction, what: progress(fraction, desc=what),
        )
        last = result.num_trace_steps
        # Gradio needs maximum > minimum; a 1-step run gets a slider that `inspect` clamps to its one step.
        slider = gr.Slider(minimum=1, maximum=max(last, 2), value=last, step=1, interactive=last > 1)
        videos = [result.video, result.flow_video, result.occlusion_video, result.panel_video]
        return *map(str, videos), [str(path) for path in result.downloads], slider, result.request_id, result.note

    @_shown_errors
    def compare(
        self, image, model, scheduler, steps, guidance, seed, fps, find_face=True, request: gr.Request = None,
        progress=_PROGRESS,
    ):  # fmt: skip
        settings = GenerationSettings(
            model=model, scheduler=scheduler, steps=steps, guidance_scale=guidance, seed=seed, fps=fps,
            find_face=find_face,
        )  # fmt: skip
        result = self.service.compare(
            _image_path(image),
            settings,
            session=_session(request),
            progress=lambda fraction, what: progress(fraction, desc=what),
        )
        return str(result.video), [str(path) for path in result.downloads]

    @_shown_errors
    def animate(
        self, image, driving_video, model, relative, motion_scale, driving_face=True, find_face=True,
        request: gr.Request = None, progress=_PROGRESS,
    ):  # fmt: skip
        settings = DrivingSettings(
            model=model, relative=relative, motion_scale=motion_scale, find_face=find_face, driving_face=driving_face
        )
        result = self.service.animate(
            _image_path(image),
            _image_path(driving_video),
            settings,
            session=_session(request),
            progress=lambda fraction, what: progress(fraction, desc=what),
        )
        videos = [result.video, result.flow_video, result.occlusion_video, result.panel_video]
        return *map(str, videos), [str(path) for path in result.downloads], result.note

    @_shown_errors
    def show_step(self, request_id, step, as_videos, fps):
        if request_id is None:  # "also as videos" ticked before the first generation: nothing to show yet
            return (gr.skip(),) * 6
        view = self.service.inspect(request_id, step, videos=as_videos, fps=fps)
        videos = [str(view.flow_video), str(view.occlusion_video)] if as_videos else [None, None]
        return view.caption, view.flow_strip, view.occlusion_strip, gr.Row(visible=as_videos), *videos

    @_shown_errors
    def preview_face(self, image, find_face, model):
        """Runs as soon as a picture arrives: the face found, or what is wrong with the file, beside the input."""
        if _image_path(image) is None:  # the picture was cleared
            return None, ""
        try:
            preview = self.service.find_face(_image_path(image), bool(find_face), model)
        except UserInputError as error:  # an unreadable, empty or oversized file: say so now, not after Generate
            return None, f"**{_sentence(str(error))}**"
        return preview.picture, preview.note

    def start(self, image, label, model, scheduler, steps, guidance, seed, fps, find_face=True, num_frames=None,
              motion_scale=1.0):  # fmt: skip
        """As a run starts: about how long it takes (empty for a short run or settings it rejects) and Stop on."""
        settings = GenerationSettings(
            label=label, model=model, scheduler=scheduler, steps=steps, guidance_scale=guidance, seed=seed, fps=fps,
            num_frames=num_frames, motion_scale=motion_scale, find_face=find_face,
        )  # fmt: skip
        return self._started(_image_path(image), settings, 1)

    def start_compare(self, image, model, scheduler, steps, guidance, seed, fps, find_face=True):
        settings = GenerationSettings(
            model=model, scheduler=scheduler, steps=steps, guidance_scale=guidance, seed=seed, fps=fps,
            find_face=find_face,
        )  # fmt: skip
        return self._started(_image_path(image), settings, None)

    def _started(self, image_path, settings: GenerationSettings, num_labels: int | None):
        try:
            compare = num_labels is None
            num_labels = num_labels or len(self.service.labels(settings.model))
            note = self.service.estimate_note(image_path, settings, num_labels, compare=compare)
        except Exception:  # the run itself reports what is wrong; an estimate never stands in its way
            logger.exception("estimating the time failed")
            note = ""
        return note, gr.Button(interactive=True), gr.Button(interactive=True)

    def stop(self, request: gr.Request):
        self.service.stop(_session(request))

    @_shown_errors
    def choose_model(self, model):
        labels = self.service.labels(model)
        frames = self.service.pipeline(model).num_frames  # the model's clip: the default length
        length = gr.Slider(minimum=min(16, frames), maximum=max(64, frames), value=frames)
        scheduler, steps = self.service.default_sampler(model)  # the model's own sampler and measured steps
        presets = self.service.quality_presets(model)
        quality = gr.Radio(choices=list(presets), value=preset_of(presets, scheduler, steps))
        label = gr.Dropdown(choices=labels, value=self.service.default_label(model))
        faces = self.service.pipeline(model).framing.is_face  # a whole-picture model never searches for a face
        find_face = gr.Checkbox(visible=faces, value=faces)
        # the Driving video tab's switches: the picture's face and the driving face, both only on a face model
        driving = [gr.Checkbox(visible=faces, value=faces) for _ in range(2)]
        return label, self.service.describe(model), length, find_face, *driving, scheduler, steps, quality

    @_shown_errors
    def page_loaded(self):
        if not self.service.has_model:
            return gr.Dropdown(), NO_MODEL_MESSAGE, gr.Slider(), *(gr.skip(),) * 6
        return self.choose_model(self.service.default_model)

    @_shown_errors
    def choose_quality(self, model, quality):
        """A Quality choice sets the scheduler and steps boxes."""
        presets = self.service.quality_presets(model)
        if quality not in presets:
            return gr.skip(), gr.skip()
        return presets[quality]

    @_shown_errors
    def choose_scheduler(self, model, scheduler):
        """Another scheduler: its default steps on this model, and the Quality choice that now matches."""
        steps = self.service.default_steps(model, scheduler)
        return steps, preset_of(self.service.quality_presets(model), scheduler, steps)

    @_shown_errors
    def choose_steps(self, model, scheduler, steps):
        return preset_of(self.service.quality_presets(model), scheduler, steps)


def build_demo(
    service: GenerationService,
    *,
    examples_dir: str | Path | None = None,
    driving_dir: str | Path | None = None,
) -> gr.Blocks:
    """The whole app around `service`; `demo.queue(...)` is applied, `launch` is the caller's. `driving_dir` holds
    the example driving videos, listed with their names and thumbnails in its clips.json.

    The example folders are served from where they are (`gr.set_static_paths`), not copied into Gradio's temporary
    folder: another app or test run that cleans that folder cannot take the examples away."""
    gr.set_static_paths([Path(folder) for folder in (examples_dir, driving_dir) if folder is not None])
    with gr.Blocks(title=text.TITLE, analytics_enabled=False, delete_cache=(900, 3600)) as demo:
        request_id = gr.State(None)  # which run the inspector shows; its trace stays on the server
        run_note = gr.State("")  # a State, not a shown output, so that /generate returns what it always returned
        gr.Markdown(text.HEADER)
        if not service.has_model:
            gr.Markdown(NO_MODEL_MESSAGE, elem_id="no-model")
        with gr.Tabs():
            with gr.Tab("Generate"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=320):
                        inputs = layout.inputs_column(service, examples_dir)
                    with gr.Column(scale=2):
                        results = layout.results_column()
                with gr.Accordion("Step inspector", open=False, elem_id="inspector"):  # opened by who wants it
                    inspector = layout.inspector()
            with gr.Tab("Compare"):
                compare = layout.compare_tab()
            with gr.Tab("Driving video"):
                driving = driving_tab(examples_dir, driving_dir)
            with gr.Tab("About"):
                about = text.ABOUT.format(max_resolution=service.max_resolution)
                gr.Markdown(f"{about}\n## The default model\n{service.describe()}")
        handlers = _Handlers(service)
        _wire(demo, handlers, inputs, results, inspector, compare, request_id, run_note, driving)
        wire_driving_tab(driving, _on_gpu(handlers.animate), handlers.stop, inputs.model)
    return demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)


def _wire(
    demo: gr.Blocks, handlers: _Handlers, inputs, results, inspector, compare, request_id, run_note, driving
) -> None:
    """The events. Generate and Compare share one queue slot (`concurrency_id="model"`); they skip Gradio's
    preprocessing so the service opens uploads itself. The inspector and the small helpers skip the queue, so they
    answer while a generation runs."""
    settings = [inputs.model, inputs.scheduler, inputs.steps, inputs.guidance, inputs.seed, inputs.fps]
    settings.append(inputs.find_face)  # last, so that API calls written before it keep working (default: on)
    outputs = [
        results.video,
        results.flow_video,
        results.occlusion_video,
        results.panel_video,
        results.downloads,
        inspector.step,
        request_id,
        run_note,
    ]
    queued = dict(preprocess=False, concurrency_id="model", concurrency_limit=1)
    motion = [inputs.num_frames, inputs.motion_scale]  # last, so API calls without them keep working
    # A click first says about how long the run takes and turns Stop on (at once, outside the queue), then runs.
    stops = [inputs.stop, compare.stop]
    starting = dict(preprocess=False, queue=False, api_visibility="private")
    generating = inputs.generate.click(
        handlers.start, [inputs.image, inputs.label, *settings, *motion], [results.run_note, *stops], **starting
    ).then(
        _on_gpu(handlers.generate),
        [inputs.image, inputs.label, *settings, *motion],
        outputs,
        api_name="generate",
        **queued,
    )
    step_inputs = [request_id, inspector.step, inspector.as_videos, inputs.fps]
    generating.success(handlers.show_step, step_inputs, inspector.outputs, queue=False, api_visibility="private")
    generating.success(lambda note: note, run_note, results.run_note, queue=False, api_visibility="private")
    comparing = compare.button.click(
        handlers.start_compare, [inputs.image, *settings], [compare.note, *stops], **starting
    ).then(
        _on_gpu(handlers.compare),
        [inputs.image, *settings],
        [compare.video, compare.files],
        api_name="compare",
        **queued,
    )
    idle = lambda: [gr.Button(interactive=False)] * len(stops)  # Stop is on only while something runs
    for button in stops:
        button.click(handlers.stop, None, None, cancels=[generating, comparing], queue=False, api_visibility="private")
        button.click(idle, None, stops, queue=False, api_visibility="private")
    for running in (generating, comparing):
        running.then(idle, None, stops, queue=False, api_visibility="private")
    for changed in (inspector.step.input, inspector.as_videos.input):
        changed(
            handlers.show_step,
            step_inputs,
            inspector.outputs,
            queue=False,
            trigger_mode="always_last",
            api_visibility="private",
        )
    inputs.image.change(lambda: "", None, results.run_note, queue=False, api_visibility="private")  # a stale note
    for changed in (inputs.image.change, inputs.find_face.change):
        changed(
            handlers.preview_face,
            [inputs.image, inputs.find_face, inputs.model],
            [inputs.face_preview, inputs.face_note],
            preprocess=False,
            queue=False,
            trigger_mode="always_last",
            api_name="find_face",
        )
    inputs.dice.click(lambda: random.randint(0, SEED_MAX), None, inputs.seed, queue=False, api_visibility="private")
    private = dict(queue=False, api_visibility="private")
    sampler = [inputs.scheduler, inputs.steps]
    inputs.quality.input(handlers.choose_quality, [inputs.model, inputs.quality], sampler, **private)
    inputs.scheduler.input(
        handlers.choose_scheduler, [inputs.model, inputs.scheduler], [inputs.steps, inputs.quality], **private
    )
    inputs.steps.input(handlers.choose_steps, [inputs.model, *sampler], inputs.quality, **private)
    switches = [inputs.find_face, driving.find_face, driving.driving_face]  # face models only
    model_outputs = [inputs.label, inputs.model_info, inputs.num_frames, *switches, *sampler, inputs.quality]
    inputs.model.input(handlers.choose_model, inputs.model, model_outputs, api_visibility="private")
    demo.load(handlers.page_loaded, None, model_outputs, api_visibility="private")


def _session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)
