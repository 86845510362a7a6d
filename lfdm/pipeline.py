"""`LFDMPipeline`: one image and action labels in, one video per label out (paper, Sec. 3.3, inference).

Notation (variable -> paper):
- `latents` -> the DM variable x_t, (B, 3, F, h, w) with channels [flow_x, flow_y, 2*occlusion - 1];
- `pred_original_sample` -> the model's clean estimate x_0 at step t (after dynamic thresholding);
- `image_features` -> z_0 = Phi(x_0), the LFAE encoder's features of the input image, (B, C, h, w);
- `label_embeddings` -> e(y), (B, 768); the null embedding stands for the empty condition of guidance.

Where the constants live (one place each, saved with the weights): the label list in the label encoder's config,
the image and latent size in the LFAE's config, the number of frames in the U-Net's config (`num_frames`, the
length it was trained on; the network itself accepts any length, so `__call__` can override it), the default
sampler in the scheduler's class and its measured step count in the scheduler's config (`lfdm.schedulers`), and how
its pictures are framed (aligned faces or the whole picture) in the LFAE's config (`lfdm.framing`).

Where the work lives:
- framing: how the model's pictures were framed is `pipe.framing` (`lfdm.framing`, saved with the model); a photo
  is framed that way by `lfdm.photo.frame_photo`, a driving video's face by `lfdm.driving.frame_driving_faces`;
- processing: picture in and video out go through `pipe.processor` (`lfdm.processor.LFDMProcessor`, made from the
  model's image size and framing): `preprocess` reads and frames the picture, `frame_driving` the driving frames,
  `render` draws the video at the photo's size (`lfdm.photo.render_photo_video`), `postprocess` gives the output
  type;
- sampling: the pipeline's own steps are its methods (`check_inputs`, `encode_image`, `sample_flows` and, for
  videos longer than a clip, `sample_chained_flows`, `decode_flows`), with the model's default sampler and steps
  from `lfdm.schedulers`.
The helpers take and return tensors and never the pipeline: `lfdm.flow_edits` (motion strength, composing and
chaining flows), `lfdm.driving` (reading a driving video and estimating its motion) and `lfdm.photo`.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from einops import rearrange, repeat

from lfdm.driving import DRIVING_LABEL, MAX_DRIVING_FRAMES, estimate_driving_flows
from lfdm.flow_edits import check_motion_scale, continue_step_trace, continue_video, num_clips, scale_motion
from lfdm.framing import MAX_RESOLUTION, ModelFraming
from lfdm.guidance import guided_model_output
from lfdm.latents import latents_to_flows
from lfdm.models.labels import LabelEncoder
from lfdm.models.lfae import LatentFlowAutoencoder
from lfdm.models.refiner import PhotoRefiner
from lfdm.models.unet3d import FlowUNet3D
from lfdm.processor import LFDMProcessor
from lfdm.runtime import available_cpus, keep_freed_memory, resolve_dtype
from lfdm.schedulers import default_steps

logger = logging.getLogger(__name__)

__all__ = ["LFDMPipeline", "LFDMPipelineOutput", "add_refiner", "load_pipeline"]


@dataclass
class LFDMPipelineOutput(BaseOutput):
    """What `LFDMPipeline.__call__` returns; B = number of labels, F = frames, S = sampling steps run.

    Args:
        frames: (B, F, H, W, 3) generated video, float32 in [0, 1] (numpy, or a tensor for `output_type="pt"`): at
            the model's size S (H = W = S) with `resolution=None`, else at the photo's aspect (`resolution`).
        warped: (B, F, S, S, 3) the model's input warped by each frame's flow, before the decoder inpaints.
        flows: (B, F, h, w, 2) absolute backward sampling grids in [-1, 1], x first, of the model's input (the
            aligned face crop when a face was used).
        occlusions: (B, F, h, w) occlusion maps in [0, 1], 1 = visible.
        labels: the B labels, in order.
        trace_flows: (S, B, F, h, w, 2) each step's predicted clean flows (`return_step_trace=True`), else None.
        trace_occlusions: (S, B, F, h, w) each step's predicted clean occlusion maps, else None.
        trace_timesteps: (S,) int64 the scheduler timestep of each traced step, else None.
        interrupted: True when `pipe.interrupt` stopped sampling early (the video is then decoded from the last
            step's clean estimate).
        face_box: (x0, y0, x1, y1) of the face animated, in the input's pixels, or None (whole picture).
        face_note: what the face search found when it matters (no face, a face too small, several faces), or None.
        model_input: (S, S, 3) the picture the model animated (the aligned face crop or the padded whole picture).
        model_frames: (B, F, S, S, 3) the decoder's frames of `model_input` (the same as `frames` when
            `resolution=None`).
        driving_face_frames: bool (F,) for `animate` with `driving_face="auto"` on a face model: True where the
            driving face was found (elsewhere its framing is filled in from the neighbouring frames); else None.
        driving_note: what the driving face search found (`animate`), or None.
    """

    frames: np.ndarray | torch.Tensor
    warped: np.ndarray | torch.Tensor
    flows: np.ndarray | torch.Tensor
    occlusions: np.ndarray | torch.Tensor
    labels: list[str]
    trace_flows: np.ndarray | torch.Tensor | None = None
    trace_occlusions: np.ndarray | torch.Tensor | None = None
    trace_timesteps: np.ndarray | torch.Tensor | None = None
    interrupted: bool = False
    face_box: tuple[int, int, int, int] | None = None
    face_note: str | None = None
    model_input: np.ndarray | torch.Tensor | None = None
    model_frames: np.ndarray | torch.Tensor | None = None
    driving_face_frames: np.ndarray | None = None
    driving_note: str | None = None


@dataclass
class SampledFlows:
    """What the sampling loop of one video gives (`LFDMPipeline.sample_flows`), before motion scaling and decoding.

    flows (B, F, h, w, 2), occlusions (B, F, h, w) on the execution device; trace_flows (S, B, F, h, w, 2),
    trace_occlusions (S, B, F, h, w) and trace_timesteps (S,) on the CPU with `return_step_trace`, else None.
    """

    flows: torch.Tensor
    occlusions: torch.Tensor
    interrupted: bool = False
    trace_flows: torch.Tensor | None = None
    trace_occlusions: torch.Tensor | None = None
    trace_timesteps: torch.Tensor | None = None


def predicted_clean_sample(scheduler, model_output: torch.Tensor, timestep, sample: torch.Tensor) -> torch.Tensor:
    """x_0 from the model output at `timestep`, as DDPM/DDIM compute it (Ho et al. 2020, eq. 15).

    For schedulers whose step output has no `pred_original_sample` (DPM-Solver++, UniPC), so that every scheduler
    gives callbacks and the trace the same quantity: x0 = (x_t - sqrt(1 - acp_t) eps) / sqrt(acp_t) when the model
    output is the noise eps, then the scheduler's own dynamic thresholding (or clipping) when its config turns it on.
    """
    alpha_prod = scheduler.alphas_cumprod.to(device=sample.device, dtype=sample.dtype)[int(timestep)]
    beta_prod = 1 - alpha_prod
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        x0 = (sample - beta_prod.sqrt() * model_output) / alpha_prod.sqrt()
    elif prediction_type == "v_prediction":
        x0 = alpha_prod.sqrt() * sample - beta_prod.sqrt() * model_output
    elif prediction_type == "sample":
        x0 = model_output
    else:
        raise ValueError(
            f"prediction_type {prediction_type!r} is not supported; use 'epsilon', 'v_prediction' or 'sample'."
        )
    if getattr(scheduler.config, "thresholding", False):
        return scheduler._threshold_sample(x0)
    if getattr(scheduler.config, "clip_sample", False):
        limit = scheduler.config.clip_sample_range
        return x0.clamp(-limit, limit)
    return x0


def _shifted_callback(callback, offset: int):
    """Number the steps of every chained clip one after the other (a plain function callback; diffusers' callback
    objects keep their own count)."""
    if callback is None or offset == 0 or isinstance(callback, (PipelineCallback, MultiPipelineCallbacks)):
        return callback
    return lambda pipe, step_index, timestep, tensors: callback(pipe, offset + step_index, timestep, tensors)


def _check_components(lfae, unet, label_encoder) -> None:
    """The three models must fit together; a mismatch means a wrongly assembled or converted pipeline."""
    if unet.config.feature_channels != lfae.feature_channels:
        raise ValueError(
            f"the U-Net takes {unet.config.feature_channels}-channel image features but the LFAE makes "
            f"{lfae.feature_channels}; build the U-Net with feature_channels={lfae.feature_channels}."
        )
    if unet.config.label_dim != label_encoder.config.embedding_dim:
        raise ValueError(
            f"the U-Net takes {unet.config.label_dim}-d label embeddings but the label encoder makes "
            f"{label_encoder.config.embedding_dim}-d ones; they must agree."
        )
    if unet.config.sample_size != lfae.latent_size:
        logger.warning(
            "the U-Net config says sample_size=%d but the LFAE's latents are %d wide; using the LFAE's.",
            unet.config.sample_size,
            lfae.latent_size,
        )


class LFDMPipeline(DiffusionPipeline):
    r"""Latent flow diffusion: image + action label -> video (Ni et al., CVPR 2023).

    Components: `lfae` (`LatentFlowAutoencoder`), `unet` (`FlowUNet3D`), `scheduler` (any diffusers scheduler of
    the DDPM family: DDPM, DDIM, DPM-Solver++, UniPC), `label_encoder` (`LabelEncoder`), and the optional `refiner`
    (`PhotoRefiner`), which paints new content when a photo is animated at its own size (`resolution`); without
    it the decoder's change (its frame minus its frame 0) is added there (`lfdm.photo.render_photo_video`).
    Pictures in and videos out go through `processor` (`lfdm.processor.LFDMProcessor`), which the pipeline makes
    from its image size and framing; it is not a saved component.

    Swap the sampler with `pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)`, or leave `pipe` as it
    is and sample with `pipe.with_scheduler(scheduler)` (a server that runs requests with different samplers). Set
    `pipe.interrupt = True` from a callback to stop sampling early: the video is then decoded from the last step's
    clean estimate and the output says `interrupted=True`.
    """

    model_cpu_offload_seq = "lfae->label_encoder->unet->refiner"
    _optional_components = ["refiner"]
    _callback_tensor_inputs = ["latents", "pred_original_sample"]

    def __init__(
        self,
        lfae: LatentFlowAutoencoder,
        unet: FlowUNet3D,
        scheduler,
        label_encoder: LabelEncoder,
        refiner: PhotoRefiner | None = None,
    ):
        super().__init__()
        _check_components(lfae, unet, label_encoder)
        self.register_modules(lfae=lfae, unet=unet, scheduler=scheduler, label_encoder=label_encoder, refiner=refiner)
        self._processor = None
        self._interrupt = False

    # --- what the model knows -------------------------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        """The action labels this model was trained on (from the label encoder's config)."""
        return list(self.label_encoder.config.labels)

    @property
    def num_frames(self) -> int:
        """Frames per video by default: the clip length the U-Net was trained on (its config)."""
        return int(self.unet.config.num_frames)

    @property
    def image_size(self) -> int:
        """Side of the square frames, pixels (from the LFAE's config)."""
        return int(self.lfae.config.image_size)

    @property
    def framing(self) -> ModelFraming:
        """How the model's training pictures were framed: aligned faces (target eye points and their range) or the
        whole picture. Saved in the LFAE's config (`lfdm.framing` says why there); a pipeline saved without one is
        SynthFace-framed (`lfdm.framing.SYNTHFACE_FRAMING`)."""
        return ModelFraming.from_config(self.lfae.config.get("framing"))

    @property
    def processor(self) -> LFDMProcessor:
        """Picture in and video out (`lfdm.processor.LFDMProcessor`), made from `image_size` and `framing` on first
        use and made again when they change (a framing written into the LFAE's config after loading)."""
        processor = self._processor
        if processor is None or (processor.image_size, processor.framing) != (self.image_size, self.framing):
            processor = self._processor = LFDMProcessor(self.image_size, self.framing)
        return processor

    @property
    def latent_size(self) -> int:
        """Side of the square flow and occlusion maps (h = w)."""
        return int(self.lfae.latent_size)

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    @interrupt.setter
    def interrupt(self, value: bool) -> None:
        self._interrupt = bool(value)

    def with_scheduler(self, scheduler) -> LFDMPipeline:
        """A pipeline that shares this one's networks (no copy) and samples with `scheduler`: a new pipeline object
        with its own scheduler and its own `interrupt` flag, so that runs with different samplers (a scheduler also
        keeps the state of the run it is in) change neither this pipeline nor each other. Built from `components`
        as diffusers shares components between pipelines; the progress bar settings carry over."""
        view = type(self)(**{**self.components, "scheduler": scheduler})
        view.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return view

    # --- steps of __call__ ----------------------------------------------------------------------------------------

    def check_inputs(
        self,
        *,
        output_type: str,
        decode_chunk_size: int | None,
        motion_scale: float,
        face: str,
        resolution: int | str | None,
        max_resolution: int,
        labels: Sequence[str] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float = 1.0,
        num_frames: int | None = None,
        tensor_inputs: Sequence[str] = (),
        driving_face: str | None = None,
    ) -> None:
        """Raise ValueError, before any work is done, for an argument of `__call__` or `animate` that cannot work.

        The first six are shared by both; `labels` (then checked with the sampling arguments after it) is given by
        `__call__` only, `driving_face` by `animate` only. Both call it once, first; their later steps do not
        check these arguments again.
        """
        if decode_chunk_size is not None and decode_chunk_size < 1:
            raise ValueError(f"`decode_chunk_size` must be >= 1 or None (all frames at once); got {decode_chunk_size}.")
        check_motion_scale(motion_scale)
        self.processor.check_inputs(
            face=face,
            resolution=resolution,
            max_resolution=max_resolution,
            output_type=output_type,
            driving_face=driving_face,
        )
        if labels is not None:
            self._check_sampling_inputs(labels, num_inference_steps, guidance_scale, num_frames, tensor_inputs)

    def _check_sampling_inputs(self, labels, num_inference_steps, guidance_scale, num_frames, tensor_inputs) -> None:
        """The part of `check_inputs` that only `__call__` needs: labels, steps, guidance, length, callback tensors."""
        if not labels:
            raise ValueError(f"`label` is empty; give at least one of {self.labels}.")
        unknown = [label for label in labels if label not in self.labels]
        if unknown:
            raise ValueError(f"unknown label(s) {unknown}; this model knows {self.labels}.")
        if num_inference_steps is not None and (
            int(num_inference_steps) != num_inference_steps or num_inference_steps < 1
        ):
            raise ValueError(f"`num_inference_steps` must be a whole number >= 1; got {num_inference_steps}.")
        if not np.isfinite(guidance_scale) or guidance_scale < 0:
            raise ValueError(
                f"`guidance_scale` must be a finite number >= 0 (1.0 = no guidance); got {guidance_scale}."
            )
        if int(num_frames) != num_frames or num_frames < 1:
            raise ValueError(f"`num_frames` must be a whole number >= 1; got {num_frames}.")
        bad = [name for name in tensor_inputs if name not in self._callback_tensor_inputs]
        if bad:
            raise ValueError(
                f"callback tensor inputs {bad} are not available; choose from {self._callback_tensor_inputs}."
            )

    def encode_image(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """The LFAE encoder pyramid of the (1, 3, H, W) image, finest first; the last entry is z_0 (1, C, h, w)."""
        return self.lfae.encode_pyramid(pixels.to(self.lfae.dtype))

    def encode_labels(self, labels: list[str]) -> torch.Tensor:
        """labels -> e(y) (B, 768) in the U-Net's dtype."""
        embeddings = self.label_encoder(labels)
        return embeddings.to(device=self._execution_device, dtype=self.unet.dtype)

    def prepare_latents(self, batch_size: int, num_frames: int, generator, device) -> torch.Tensor:
        """Gaussian noise x_T (B, 3, F, h, w), float32, scaled by the scheduler's initial sigma."""
        shape = (batch_size, 3, int(num_frames), self.latent_size, self.latent_size)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"got {len(generator)} generators for {batch_size} labels; pass one per label, or one.")
        latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        return latents * self.scheduler.init_noise_sigma

    def predict_model_output(self, latents, timestep, image_features, label_embeddings, guidance_scale) -> torch.Tensor:
        """The U-Net's output o_theta(x_t, t, z_0, e(y)) (B, 3, F, h, w), float32: the clean sample, the noise or v,
        as the scheduler's `prediction_type` says.

        `guidance_scale == 1` makes one conditional U-Net pass; anything else makes ONE batched pass over
        [null; cond] and mixes the halves (`lfdm.guidance.guided_model_output`, the official
        `forward_with_cond_scale`).
        """
        model_input = self.scheduler.scale_model_input(latents, timestep).to(self.unet.dtype)
        timesteps = timestep.to(latents.device).expand(latents.shape[0])
        model_output = guided_model_output(
            self.unet, model_input, timesteps, image_features, label_embeddings, guidance_scale
        )
        return model_output.float()

    def predict_noise(self, *args, **kwargs) -> torch.Tensor:
        """Deprecated name of `predict_model_output` (the shipped U-Net predicts the clean sample, not noise)."""
        warnings.warn("LFDMPipeline.predict_noise is now predict_model_output", FutureWarning, stacklevel=2)
        return self.predict_model_output(*args, **kwargs)

    def decode_flows(self, pixels, pyramid, flows, occlusions, chunk_size: int | None, on_chunk_end=None):
        """Warp and decode every frame: flows (B, F, h, w, 2), occlusions (B, F, h, w) -> frames, warped
        (B, F, 3, H, W) in [0, 1]. All B*F frames go through the LFAE decoder in batched calls of `chunk_size`
        frames, re-using the encoder pyramid of the one reference image. `on_chunk_end(frames_done, frames)` is
        called after each call; when it sets `pipe.interrupt`, decoding stops there (B = 1: the frames so far)."""
        batch_size = flows.shape[0]
        # Flows and occlusion maps stay float32 whatever the LFAE's dtype: they are coordinates and blend weights,
        # which the LFAE warps with in float32 (`lfdm.models.blocks.warp`).
        flat_flows = rearrange(flows, "b f h w c -> (b f) h w c").float()
        flat_occlusions = rearrange(occlusions, "b f h w -> (b f) 1 h w").float()
        chunk_size = chunk_size or flat_flows.shape[0]
        frames, warped = [], []
        for start in range(0, flat_flows.shape[0], chunk_size):
            end = start + chunk_size
            decoded = self.lfae.decode(pixels, flat_flows[start:end], flat_occlusions[start:end], features=pyramid)
            frames.append(decoded.prediction.float())
            warped.append(decoded.warped.float())
            if on_chunk_end is not None:
                on_chunk_end(min(end, flat_flows.shape[0]), flat_flows.shape[0])
                if self.interrupt and batch_size == 1:
                    break
        # (b f) c H W -> b f c H W
        unflatten = lambda parts: rearrange(torch.cat(parts), "(b f) c h w -> b f c h w", b=batch_size)
        return unflatten(frames), unflatten(warped)

    def _step_kwargs(self, generator) -> dict:
        """DDPM and DDIM(eta > 0) add noise in `step` and take the generator; DPM-Solver++ and UniPC do not."""
        return {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}

    @property
    def default_num_inference_steps(self) -> int:
        """The steps `__call__` samples when given none: the model's measured count for its scheduler (saved in the
        scheduler's config), else the scheduler's usual one (`lfdm.schedulers.default_steps`)."""
        return default_steps(self.scheduler)

    def num_sampling_steps(self, num_frames: int | None = None, num_inference_steps: int | None = None) -> int:
        """The denoising steps a call for `num_frames` frames makes (each one `callback_on_step_end` call): the steps
        of one clip times the clips chained for the video (`sample_chained_flows`). None: the model's clip length,
        `default_num_inference_steps`."""
        steps_per_clip = int(num_inference_steps or self.default_num_inference_steps)
        return steps_per_clip * num_clips(int(num_frames or self.num_frames), self.num_frames)

    # --- the call -------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        image,
        label: str | Sequence[str],
        num_inference_steps: int | None = None,
        guidance_scale: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "np",
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        decode_chunk_size: int | None = None,
        return_step_trace: bool = False,
        num_frames: int | None = None,
        motion_scale: float = 1.0,
        face: str = "auto",
        resolution: int | str | None = None,
        max_resolution: int = MAX_RESOLUTION,
        return_dict: bool = True,
    ) -> LFDMPipelineOutput | tuple:
        r"""Generate one video per label from one image.

        Args:
            image: PIL image, numpy array (H, W[, 1|3|4], uint8/uint16/float in [0, 1]), tensor (3, H, W) or
                (1, 3, H, W) in [0, 1], or a file path. Any size and mode: converted to RGB; the model animates
                its face (see `face`) or the whole picture, resized with its aspect kept and padded black to the
                model's square size, as the training frames were.
            label: one label or a list; one video per label, sampled as one batch.
            num_inference_steps: sampling steps; None = `default_num_inference_steps`, the count the model
                measured for its scheduler, or for a model saved without one the scheduler's usual count
                (`lfdm.schedulers.DEFAULT_STEPS`).
            guidance_scale: classifier-free guidance weight; 1.0 = plain conditional sampling (one U-Net pass per
                step, as the paper samples), other values cost two passes per step, batched into one call.
            generator: a torch.Generator, or one per label, for reproducible videos.
            output_type: "np" (numpy float32) or "pt" (CPU tensors).
            callback_on_step_end: `fn(pipe, step_index, timestep, callback_kwargs) -> dict | None`, called once
                per step; `callback_kwargs` holds the tensors named in `callback_on_step_end_tensor_inputs`
                ("latents" x_{t-1}, "pred_original_sample" x_0, both (B, 3, F, h, w)). A returned "latents"
                replaces x_{t-1}. Setting `pipe.interrupt = True` stops sampling after that step.
            decode_chunk_size: frames per LFAE decoder call (None = all B*F frames in one call).
            return_step_trace: also return every step's predicted clean flows and occlusion maps.
            num_frames: video length; None = `pipe.num_frames`, the length the model was trained on. Longer videos
                are chained clips of that length, every frame still warping the input image (`lfdm.flow_edits`).
            motion_scale: multiplies the generated displacement before decoding: 0 = the still picture, 1 = the
                model's motion, 2 = twice as much; occlusion follows (`lfdm.flow_edits.scale_motion`). The step trace
                keeps the model's own estimates.
            face: "auto" follows the model's `framing`: a face model animates the largest face found (aligned
                like its training faces) and else the whole picture, saying so in `face_note`; a whole-picture
                model animates the whole picture. "none" always the whole picture; "require" raises ValueError when
                no face of at least 32 px is found (`pipe.processor.preprocess`, `lfdm.photo.frame_photo`).
            resolution: None = frames at the model's size, of its input; "input" = the photo's own size; a number
                = that long side. Then the flows are upsampled, warp the photo's own pixels, and a face crop is
                pasted back into the photo, so frame 0 is the photo (`pipe.processor.render`).
            max_resolution: the longest side a `resolution` video may have, pixels.
            return_dict: False gives the tuple (frames, warped, flows, occlusions).

        Returns:
            `LFDMPipelineOutput` (see its fields for shapes).
        """
        labels = [label] if isinstance(label, str) else list(label)
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        # 1. Check inputs. Raise error if not correct
        num_frames = self.num_frames if num_frames is None else num_frames
        self.check_inputs(
            output_type=output_type,
            decode_chunk_size=decode_chunk_size,
            motion_scale=motion_scale,
            face=face,
            resolution=resolution,
            max_resolution=max_resolution,
            labels=labels,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            num_frames=num_frames,
            tensor_inputs=callback_on_step_end_tensor_inputs,
        )

        # 2. Image -> the face crop or the whole picture (1, 3, S, S) in [0, 1], float32 (the decoder warps these
        # pixels) -> encoder pyramid; z_0 once per label
        self._interrupt = False
        device = self._execution_device
        batch_size = len(labels)
        framing, pixels = self.processor.preprocess(image, face=face)
        pixels = pixels.to(device=device)
        pyramid = self.encode_image(pixels)
        image_features = repeat(pyramid[-1], "1 c h w -> b c h w", b=batch_size).to(self.unet.dtype)

        # 3. Labels -> e(y) (B, 768)
        label_embeddings = self.encode_labels(labels)

        # 4-6. Sample the flows and occlusion maps: one clip, or chained clips beyond the U-Net's frame positions
        sampling = dict(
            image_features=image_features,
            label_embeddings=label_embeddings,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generator,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            return_step_trace=return_step_trace,
        )
        if num_frames > self.num_frames:
            sampled = self.sample_chained_flows(num_frames=int(num_frames), **sampling)
        else:
            sampled = self.sample_flows(num_frames=num_frames, **sampling)
        flows, occlusions = scale_motion(sampled.flows, sampled.occlusions, motion_scale)

        # 7. Warp and decode every frame in batched LFAE calls
        frames, warped = self.decode_flows(pixels, pyramid, flows, occlusions, decode_chunk_size)
        self.maybe_free_model_hooks()
        output = self._make_output(frames, warped, flows, occlusions, labels, sampled=sampled)

        # 8. At another resolution: the photo's own pixels warped by the upsampled flows, a face pasted back
        return self._photo_output(
            output,
            framing,
            resolution=resolution,
            max_resolution=max_resolution,
            output_type=output_type,
            return_dict=return_dict,
        )

    def sample_flows(
        self,
        image_features: torch.Tensor,
        label_embeddings: torch.Tensor,
        *,
        num_frames: int,
        num_inference_steps: int | None,
        guidance_scale: float,
        generator,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        return_step_trace: bool = False,
    ) -> SampledFlows:
        """Steps 4-6 of `__call__` for one clip of `num_frames` frames: noise -> the scheduler loop -> flows and
        occlusion maps. image_features (B, C, h, w) z_0 and label_embeddings (B, 768) e(y), in the U-Net's dtype."""
        device = image_features.device
        # 4. Timesteps and the starting noise x_T
        self.scheduler.set_timesteps(int(num_inference_steps or self.default_num_inference_steps), device=device)
        timesteps = self.scheduler.timesteps
        latents = self.prepare_latents(image_features.shape[0], num_frames, generator, device)
        step_kwargs = self._step_kwargs(generator)

        # 5. Denoising loop (paper Alg. 2 with a swappable scheduler)
        trace, traced_timesteps, clean = [], [], None
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for step_index, timestep in enumerate(timesteps):
                model_output = self.predict_model_output(
                    latents, timestep, image_features, label_embeddings, guidance_scale
                )
                step = self.scheduler.step(model_output, timestep, latents, **step_kwargs)
                clean = getattr(step, "pred_original_sample", None)
                if clean is None:
                    clean = predicted_clean_sample(self.scheduler, model_output, timestep, latents)
                latents = step.prev_sample
                if return_step_trace:
                    trace.append(clean.float().cpu())
                    traced_timesteps.append(int(timestep))
                if callback_on_step_end is not None:
                    tensors = {"latents": latents, "pred_original_sample": clean}
                    callback_kwargs = {name: tensors[name] for name in callback_on_step_end_tensor_inputs}
                    outputs = callback_on_step_end(self, step_index, timestep, callback_kwargs) or {}
                    latents = outputs.get("latents", latents)
                progress_bar.update()
                if self.interrupt:
                    logger.info("sampling interrupted after %d of %d steps", step_index + 1, len(timesteps))
                    break

        # 6. Final x_0 -> flows (B, F, h, w, 2) and occlusions (B, F, h, w); interrupted: the last clean estimate
        interrupted = self.interrupt
        flows, occlusions = latents_to_flows(clean if interrupted else latents, residual=self.unet.config.residual_flow)
        sampled = SampledFlows(flows=flows, occlusions=occlusions, interrupted=interrupted)
        if trace:
            # each step's x_0 (B, 3, F, h, w) -> flows and occlusions, stacked over steps
            trace_flows, trace_occlusions = latents_to_flows(
                torch.stack(trace).flatten(0, 1), residual=self.unet.config.residual_flow
            )
            steps = len(trace)
            sampled.trace_flows = trace_flows.unflatten(0, (steps, -1))
            sampled.trace_occlusions = trace_occlusions.unflatten(0, (steps, -1))
            sampled.trace_timesteps = torch.tensor(traced_timesteps, dtype=torch.int64)
        return sampled

    @torch.no_grad()
    def sample_chained_flows(
        self,
        image_features: torch.Tensor,
        label_embeddings: torch.Tensor,
        *,
        num_frames: int,
        num_inference_steps: int | None,
        guidance_scale: float,
        generator,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        return_step_trace: bool = False,
    ) -> SampledFlows:
        """`sample_flows` for `num_frames` beyond the model's clip: clips of `num_frames` (the model's) frames,
        chained as `lfdm.flow_edits` says (`num_clips`, `continue_video`).

        Arguments and result are `sample_flows`'s. Every clip samples all labels in one batch from the same image
        features; `callback_on_step_end` sees the steps of all clips numbered one after the other, the step trace
        holds each step's clean estimate of the whole video (every clip chained onto the final flows before it), and
        an interrupted run returns the frames made so far.
        """
        clips = num_clips(num_frames, self.num_frames)
        steps_per_clip = int(num_inference_steps or self.default_num_inference_steps)
        shared = dict(
            image_features=image_features,
            label_embeddings=label_embeddings,
            num_frames=self.num_frames,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generator,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            return_step_trace=return_step_trace,
        )
        flows = occlusions = trace = None
        for clip_index in range(clips):
            # 1. One clip of every label, from the picture itself
            callback = _shifted_callback(callback_on_step_end, clip_index * steps_per_clip)
            clip = self.sample_flows(callback_on_step_end=callback, **shared)
            # 2. The first clip as it is; the second half of every later one, chained onto the video's last frame
            if flows is None:
                flows, occlusions = clip.flows, clip.occlusions
                if return_step_trace:
                    trace = clip.trace_flows.flatten(0, 1), clip.trace_occlusions.flatten(0, 1)  # (S B) F h w ...
            else:
                last_frame = flows[:, -1:].cpu(), occlusions[:, -1:].cpu()  # where the trace lives
                flows, occlusions = continue_video(flows, occlusions, clip.flows, clip.occlusions)
                if return_step_trace:
                    trace = continue_step_trace(trace, last_frame, clip.trace_flows, clip.trace_occlusions)
            if clip.interrupted:
                break

        # 3. Cut to length
        sampled = replace(clip, flows=flows[:, :num_frames], occlusions=occlusions[:, :num_frames])
        if return_step_trace:
            steps = len(clip.trace_timesteps)
            trace_flows, trace_occlusions = (
                tensor[:, :num_frames].unflatten(0, (steps, -1)).float() for tensor in trace
            )
            sampled = replace(sampled, trace_flows=trace_flows, trace_occlusions=trace_occlusions)
        return sampled

    def _photo_output(self, output, framing, *, resolution, max_resolution, output_type, return_dict):
        """Finish an output of `_make_output` (CPU tensors) on the model's input through `processor`: the frames
        rendered at `resolution` (None keeps the model's frames), the face used, the model's own input and frames,
        all as `output_type` says."""
        model_frames = output.frames  # (B, F, S, S, 3)
        frames = self.processor.render(
            framing,
            output.flows,
            output.occlusions,
            model_frames,
            resolution=resolution,
            max_resolution=max_resolution,
            refiner=self.refiner,
        )
        output = replace(
            output,
            frames=frames,
            model_frames=model_frames,
            model_input=torch.from_numpy(framing.model_input).float() / 255,
            face_box=framing.face_box,
            face_note=framing.note,
        )
        postprocess = lambda name: self.processor.postprocess(getattr(output, name), output_type)
        output = replace(output, **{field.name: postprocess(field.name) for field in fields(output)})
        if not return_dict:
            return output.frames, output.warped, output.flows, output.occlusions
        return output

    @torch.no_grad()
    def animate(
        self,
        image,
        driving_video,
        relative: bool = True,
        *,
        motion_scale: float = 1.0,
        max_frames: int = MAX_DRIVING_FRAMES,
        decode_chunk_size: int | None = 16,
        face: str = "auto",
        driving_face: str = "auto",
        resolution: int | str | None = None,
        max_resolution: int = MAX_RESOLUTION,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_chunk_end: Callable[[LFDMPipeline, int, int], None] | None = None,
    ) -> LFDMPipelineOutput | tuple:
        r"""Animate `image` with the motion of a driving video through the LFAE (motion transfer, no sampling).

        Args:
            image: the picture, as for `__call__`.
            driving_video: a video file or folder of frames (mp4, GIF, ... as `lfdm.video` reads them), a uint8 or
                [0, 1] float array (F, H, W, 3), a tensor (F, 3, H, W) in [0, 1], a list of images, or a
                `lfdm.driving.DrivingVideo`.
            relative: True moves the picture's own regions as the driving regions moved since driving frame 0, so
                another face keeps its shape and frame 0 is the picture; False warps the picture into each driving
                frame's pose and shape (for the same face). See `lfdm.driving`.
            motion_scale: multiplies the displacement, as in `__call__`.
            max_frames: driving frames used at most; a longer video is cut there (and a warning logged).
            decode_chunk_size: frames per LFAE call (None = all at once).
            face, resolution, max_resolution: the picture is framed as the model's `framing` says (a face model
                finds and aligns the face) and the video rendered at `resolution`, as in `__call__`.
            driving_face: "auto": a face model finds the driving face in every frame, follows it and frames it like
                its training faces (`lfdm.face_track`), so that the camera's motion does not reach the picture; a
                clip where no face is found raises ValueError. "none", and any whole-picture model: the driving
                frames are resized and padded like the picture, as they are.
            output_type, return_dict: as in `__call__`.
            callback_on_chunk_end: `fn(pipe, frames_done, num_frames)`, called after each chunk of frames is
                decoded (for progress); setting `pipe.interrupt = True` there stops decoding after that chunk.

        Returns:
            `LFDMPipelineOutput` with B = 1, F = the driving frames used, `labels == ["driving video"]`, and
            `driving_face_frames` (F,) / `driving_note` saying where the driving face was found. A stopped run has
            `interrupted=True` and only the frames decoded before it stopped.
        """
        self.check_inputs(
            output_type=output_type,
            decode_chunk_size=decode_chunk_size,
            motion_scale=motion_scale,
            face=face,
            resolution=resolution,
            max_resolution=max_resolution,
            driving_face=driving_face,
        )
        # 1. The picture framed as the model's pictures were (float32 whatever the LFAE's dtype: the decoder warps
        # these pixels); the driving frames, their face framed likewise
        framing, pixels = self.processor.preprocess(image, face=face)
        pixels = pixels.to(device=self._execution_device)
        frames, driving_faces = self.processor.frame_driving(
            driving_video, driving_face=driving_face, max_frames=max_frames
        )

        # 2. The motion of every driving frame carried over to the picture, in the motion networks' dtype
        network = dict(device=pixels.device, dtype=self.lfae.dtype)
        chunk_size = decode_chunk_size or frames.shape[0]
        flows, occlusions = estimate_driving_flows(
            self.lfae, pixels.to(**network), frames.to(**network), relative=relative, chunk_size=chunk_size
        )
        flows, occlusions = scale_motion(flows.float(), occlusions.float(), motion_scale)

        # 3. Warp and decode (a callback may stop between chunks), then render at `resolution`
        self._interrupt = False
        on_chunk_end = None
        if callback_on_chunk_end is not None:
            on_chunk_end = lambda done, total: callback_on_chunk_end(self, done, total)
        pyramid = self.encode_image(pixels)
        video, warped = self.decode_flows(pixels, pyramid, flows, occlusions, chunk_size, on_chunk_end)
        self.maybe_free_model_hooks()
        decoded = video.shape[1]  # all frames, unless stopped
        output = self._make_output(video, warped, flows[:, :decoded], occlusions[:, :decoded], [DRIVING_LABEL])
        output = replace(output, interrupted=decoded < flows.shape[1])
        if driving_faces is not None:
            found = driving_faces.found[:decoded]
            output = replace(output, driving_face_frames=found, driving_note=driving_faces.note)
        return self._photo_output(
            output,
            framing,
            resolution=resolution,
            max_resolution=max_resolution,
            output_type=output_type,
            return_dict=return_dict,
        )

    def _make_output(self, frames, warped, flows, occlusions, labels, *, sampled: SampledFlows | None = None):
        """The output of decoded frames and warped inputs (B, F, 3, H, W), flows and occlusions, as CPU tensors in
        `LFDMPipelineOutput`'s layout; `sampled` brings the step trace and whether sampling was interrupted."""
        # b f c H W -> b f H W c: numpy frame layout
        return LFDMPipelineOutput(
            frames=rearrange(frames, "b f c h w -> b f h w c").clamp(0, 1).cpu(),
            warped=rearrange(warped, "b f c h w -> b f h w c").clamp(0, 1).cpu(),
            flows=flows.float().cpu(),
            occlusions=occlusions.float().cpu(),
            labels=labels,
            trace_flows=None if sampled is None else sampled.trace_flows,
            trace_occlusions=None if sampled is None else sampled.trace_occlusions,
            trace_timesteps=None if sampled is None else sampled.trace_timesteps,
            interrupted=False if sampled is None else sampled.interrupted,
        )


def add_refiner(pipeline_folder: str | os.PathLike, refiner_folder: str | os.PathLike) -> Path:
    """Make a saved pipeline use a trained refiner: copy `refiner_folder` (a `PhotoRefiner.save_pretrained` folder,
    e.g. a train-refiner run's `model/`) to `<pipeline_folder>/refiner` and list it in `model_index.json`. The other
    components' files are left as they are. Returns the new refiner folder."""
    pipeline_folder, refiner_folder = Path(pipeline_folder), Path(refiner_folder)
    index_file = pipeline_folder / "model_index.json"
    if not index_file.is_file():
        raise FileNotFoundError(f"{str(pipeline_folder)!r} has no model_index.json; pass a saved pipeline folder.")
    if not (refiner_folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{str(refiner_folder)!r} holds no refiner (no config.json); pass a train-refiner run's model/ folder."
        )
    PhotoRefiner.from_pretrained(refiner_folder)  # it must load, before anything is changed
    target = pipeline_folder / "refiner"
    if target.resolve() != refiner_folder.resolve():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(refiner_folder, target)
    index = json.loads(index_file.read_text())
    index["refiner"] = [PhotoRefiner.__module__, PhotoRefiner.__name__]
    index_file.write_text(json.dumps(dict(sorted(index.items())), indent=2) + "\n")
    return target


def load_pipeline(path_or_repo, device: str = "auto", dtype: str | torch.dtype | None = "auto") -> LFDMPipeline:
    """Load a pipeline folder written by `save_pretrained`, or a Hugging Face Hub repo id, onto a device.

    A local folder is used when it exists (no network); anything else is taken as a repo id (`HF_HUB_OFFLINE=1`
    then uses only the local cache). `device="auto"` picks CUDA when available, else the CPU. `dtype="auto"` (or
    None) picks bfloat16 on a CPU with AMX-BF16 and float32 elsewhere (`lfdm.runtime.resolve_dtype`); a torch
    dtype or its name ("float32", "bfloat16") always wins. Whatever the networks' dtype, the numerically fragile
    parts stay in float32: the sampling loop (latents, scheduler arithmetic, dynamic thresholding), the flows and
    occlusion maps, every grid sampling, and the LFAE's region statistics. On the CPU torch gets no more threads
    than the CPUs this process may use (containers often report the host's count), and glibc keeps freed large
    blocks for reuse (`lfdm.runtime.keep_freed_memory`, ~14 % faster full-size sampling).
    """
    source = os.fspath(path_or_repo)
    if os.path.isfile(source):
        raise FileNotFoundError(f"{source!r} is a file; pass the pipeline folder that holds model_index.json.")
    if os.path.isdir(source) and not os.path.isfile(os.path.join(source, "model_index.json")):
        raise FileNotFoundError(f"{source!r} has no model_index.json; pass a folder written by save_pretrained.")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    dtype = resolve_dtype(dtype, device)
    try:
        pipe = LFDMPipeline.from_pretrained(source, dtype=dtype)
    except OSError as error:  # huggingface_hub: unknown repo, no network, not in the cache
        raise FileNotFoundError(
            f"no pipeline folder {source!r} here and none could be loaded from the Hugging Face Hub ({error})."
        ) from error
    if device.type == "cpu":
        torch.set_num_threads(max(1, min(torch.get_num_threads(), available_cpus())))
        keep_freed_memory()
    logger.info("loaded %s on %s as %s", source, device, dtype)
    return pipe.to(device)
