"""Which models the app offers and the loaded ones: every pipeline folder under `checkpoints/` (what to do when
there is none), and `ModelRegistry`, which loads each once, keeps a few, and hands each request a pipeline with the
request's own sampler, never changing the loaded one."""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch

from lfdm.app.inputs import SCHEDULERS, UserInputError, quality_presets, shown_scheduler
from lfdm.pipeline import LFDMPipeline, load_pipeline
from lfdm.runtime import cpu_has_amx_bf16, dtype_name
from lfdm.schedulers import default_steps, make_scheduler, sampler_name

logger = logging.getLogger(__name__)

NO_MODEL_MESSAGE = """\
**No model yet.** `checkpoints/` holds no pipeline folder (a folder with a `model_index.json`). Get one of these
ways, then restart the app (it lists every pipeline folder under `checkpoints/`):

- convert the authors' released MUG checkpoints (`python -m lfdm convert --help` has the details):
  `python -m lfdm embed-labels --labels mug --out mug_labels.safetensors`, then
  `python -m lfdm convert --preset mug --lfae RegionMM_*.pth --dm flowdiff_*.pth
  --label-embeddings mug_labels.safetensors --out checkpoints/lfdm-mug128`
- train your own on SynthFace: `python -m lfdm make-dataset --help`, `python -m lfdm train-lfae --help`,
  `python -m lfdm train-dm --help`
- or start the app on a pipeline folder or a Hugging Face repo: `python app.py --model DIR_OR_REPO`
"""

# The label encoder config's key for the action the app selects first: one that visibly works (the model card says
# which). Models without it start on `FALLBACK_LABEL` when they know it, else on their first label.
DEFAULT_LABEL_KEY = "_lfdm_default_label"
FALLBACK_LABEL = "surprise"
_MAX_DEPTH = 3  # checkpoints/<data set>/<run>/ is as deep as people nest them
_MAX_CARD_CHARS = 1200


def find_pipelines(root: str | Path) -> dict[str, str]:
    """Every pipeline folder (one holding `model_index.json`) in `root` and up to three levels below it.

    Returns shown name -> folder path, sorted; the name is the folder's path from the parent of `root`
    (`checkpoints`, `checkpoints/mug128`).
    """
    root = Path(root)
    if not root.is_dir():
        return {}
    found = {}
    for index in sorted(root.glob("model_index.json")) + sorted(
        path for depth in range(1, _MAX_DEPTH + 1) for path in root.glob("/".join(["*"] * depth) + "/model_index.json")
    ):
        folder = index.parent
        found[folder.relative_to(root.parent).as_posix()] = str(folder)
    return found


def read_model_card(path: str | Path) -> str:
    """The text of a pipeline folder's README.md without its YAML front matter, shortened; "" if there is none."""
    card = Path(path) / "README.md"
    if not card.is_file():
        return ""
    text = re.sub(r"\A---\n.*?\n---\n", "", card.read_text(encoding="utf-8", errors="replace"), flags=re.DOTALL)
    text = text.strip()
    if len(text) > _MAX_CARD_CHARS:
        text = text[:_MAX_CARD_CHARS].rsplit("\n", 1)[0] + "\n\n..."
    return text


class ModelRegistry:
    """The models on offer, loaded on first use and kept (at most `max_loaded`, least recently used dropped), and
    what each one says about itself: labels, the action selected first, its own sampler and steps.

    The loaded pipelines are shared by every request and never changed: `request_pipeline` gives a request the
    model's networks with a scheduler of its own (`LFDMPipeline.with_scheduler`).

    Args:
        models: shown name -> pipeline folder or Hub repo id.
        default_model: the name selected at start; None (or an unknown name): the first one, if any.
        max_loaded: pipelines kept in memory at once.
        device, dtype: as `lfdm.pipeline.load_pipeline` takes them.
    """

    def __init__(
        self,
        models: Mapping[str, str],
        default_model: str | None = None,
        *,
        max_loaded: int = 2,
        device: str = "auto",
        dtype: str | torch.dtype = "auto",
    ):
        self.models = dict(models)
        self.default_model = default_model if default_model in self.models else next(iter(self.models), None)
        self.max_loaded = max_loaded
        self.device = device
        self.dtype = dtype
        self._pipelines: OrderedDict[str, LFDMPipeline] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def has_model(self) -> bool:
        return self.default_model is not None

    def name(self, model: str | None) -> str:
        """The model's name as offered (None: the default model); UserInputError for no model or an unknown one."""
        if not self.has_model:
            raise UserInputError(NO_MODEL_MESSAGE)
        name = model or self.default_model
        if name not in self.models:
            raise UserInputError(f"unknown model {name!r}; choose one of: {', '.join(self.models)}.")
        return name

    def pipeline(self, model: str | None = None) -> LFDMPipeline:
        """The loaded pipeline of `model` (default: the default model), shared: read it, never change it."""
        name = self.name(model)
        with self._lock:
            if name not in self._pipelines:
                logger.info("loading model %r from %s", name, self.models[name])
                try:
                    pipe = load_pipeline(self.models[name], device=self.device, dtype=self.dtype)
                except (OSError, ValueError) as error:  # a broken folder, an unknown repo, no network
                    raise UserInputError(f"could not load the model {name!r}: {error}") from error
                pipe.set_progress_bar_config(disable=True)
                self._pipelines[name] = pipe
                while len(self._pipelines) > self.max_loaded:
                    dropped, _ = self._pipelines.popitem(last=False)
                    logger.info("unloaded model %r", dropped)
            self._pipelines.move_to_end(name)
            return self._pipelines[name]

    def request_pipeline(self, model: str | None, scheduler: str | None = None) -> LFDMPipeline:
        """The model's networks for one request, with a new scheduler: `scheduler` (a `make_scheduler` name) on the
        model's own schedule, or None a fresh copy of the model's own. Its scheduler and its stop flag
        (`interrupt`) are the request's, so requests with different samplers never meet."""
        pipe = self.pipeline(model)
        own = pipe.scheduler
        fresh = type(own).from_config(own.config) if scheduler is None else make_scheduler(scheduler, own.config)
        return pipe.with_scheduler(fresh)

    def labels(self, model: str | None = None) -> list[str]:
        """The actions the model knows, from its own config (never a list of ours); [] without a model."""
        return self.pipeline(model).labels if self.has_model else []

    def default_label(self, model: str | None = None) -> str | None:
        """The action selected first: the model's own choice (`DEFAULT_LABEL_KEY` in its label encoder config),
        else `FALLBACK_LABEL` when the model knows it, else its first label."""
        if not self.has_model:
            return None
        pipe = self.pipeline(model)
        labels = pipe.labels
        chosen = pipe.label_encoder.config.get(DEFAULT_LABEL_KEY)
        for label in (chosen, FALLBACK_LABEL):
            if label in labels:
                return label
        return labels[0] if labels else None

    def describe(self, model: str | None = None) -> str:
        """Markdown: what the model is (size, frames, labels, where it runs, and its model card's summary if any)."""
        if not self.has_model:
            return NO_MODEL_MESSAGE
        name = self.name(model)
        pipe = self.pipeline(name)
        text = (
            f"**Model** `{name}`: {pipe.image_size}x{pipe.image_size} pixels, {pipe.num_frames} frames, "
            f"{len(pipe.labels)} actions ({', '.join(pipe.labels)}). {_precision(pipe)}"
        )
        card = read_model_card(self.models[name])
        return f"{text}\n\n{card}" if card else text

    def default_sampler(self, model: str | None = None) -> tuple[str, int]:
        """The model's own sampler (its shown name in `SCHEDULERS`) and the steps it samples by default."""
        shown = shown_scheduler(sampler_name(self.pipeline(model).scheduler))
        return shown, self.default_steps(model, shown)

    def default_steps(self, model: str | None, scheduler: str) -> int:
        """The steps `scheduler` (a shown name or `make_scheduler` name) samples on this model by default: the
        model's measured count for it, else the sampler's usual count (`lfdm.schedulers.default_steps`)."""
        own = self.pipeline(model).scheduler
        return default_steps(make_scheduler(SCHEDULERS.get(scheduler, scheduler), base_config=own.config))

    def quality_presets(self, model: str | None = None) -> dict[str, tuple[str, int]]:
        """The Quality choices for the model: its measured default, 25 steps, the paper's DDPM 1000."""
        return quality_presets(*self.default_sampler(model))


def _precision(pipe: LFDMPipeline) -> str:
    """Where the networks run and in which precision, and why (Markdown)."""
    device, dtype = pipe.device, pipe.unet.dtype
    where = f"Runs on the {'GPU' if device.type == 'cuda' else 'CPU'} in **{dtype_name(dtype)}**"
    if device.type == "cpu" and dtype == torch.bfloat16 and cpu_has_amx_bf16():
        return where + " (this CPU has AMX-BF16, where bfloat16 is 2-3x faster than float32)."
    return where + "."
