"""Edits of latent flow sequences: motion strength, flow composition, and videos longer than the model's clip.

Flows are absolute backward sampling grids (..., h, w, 2) in [-1, 1], x first; occlusion maps (..., h, w) in
[0, 1], 1 = visible (`lfdm.latents`). A flow's *displacement* is measured from `resting_grid`, the grid that
leaves a picture where it is under the LFAE's `grid_sample(align_corners=False)` (the MRAA "identity grid" of
`identity_grid` would shrink it), so a zero displacement decodes to the still picture.

Longer videos (`generate_chained`): the U-Net knows `pipe.num_frames` frame positions, so a longer video is made
of clips. Every frame still warps the ORIGINAL picture: clip k is sampled conditioned on the frame where it starts
(the picture warped by the video so far, so the model sees the face as it is by then), its flows say how that
frame moves, and composing them with that frame's flow (`compose_flows`) maps them back onto the picture. Clips
overlap by `overlap` frames, cross-faded, so there is no jump where they meet.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F
from einops import rearrange

from lfdm.latents import resting_grid

logger = logging.getLogger(__name__)

CLIP_OVERLAP = 4  # frames two chained clips share and cross-fade over
MAX_MOTION_SCALE = 10.0  # beyond this the displacement leaves the picture for every frame


def check_motion_scale(motion_scale: float) -> float:
    """`motion_scale` as a float, or a ValueError that says the allowed range."""
    try:
        scale = float(motion_scale)
    except (TypeError, ValueError):
        raise ValueError(f"`motion_scale` must be a number from 0 to {MAX_MOTION_SCALE:g}; got {motion_scale!r}.")
    if not math.isfinite(scale) or not 0 <= scale <= MAX_MOTION_SCALE:
        raise ValueError(
            f"`motion_scale` must be a number from 0 to {MAX_MOTION_SCALE:g} (0 = still picture, 1 = the model's "
            f"motion, 2 = twice as much); got {motion_scale!r}."
        )
    return scale


def displacement(flows: torch.Tensor) -> torch.Tensor:
    """flows (..., h, w, 2) -> their displacement from the resting grid, same shape."""
    height, width = flows.shape[-3:-1]
    return flows - resting_grid(height, width, device=flows.device, dtype=flows.dtype)


def scale_motion(
    flows: torch.Tensor, occlusions: torch.Tensor, motion_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale the motion of flows (..., h, w, 2) and occlusion maps (..., h, w) by `motion_scale` >= 0.

    The displacement from the resting grid is multiplied by the scale: 0 gives the still picture, 1 the input, 2
    twice the motion. Occlusion follows as `1 - (1 - occlusion) * min(scale, 1)`: with less motion less of the
    picture is uncovered, down to nothing to inpaint at 0; beyond 1 the map is kept, because a longer motion moves
    the uncovered area rather than making it more uncovered, and deepening the map would blank out parts that are
    merely stretched.
    """
    scale = check_motion_scale(motion_scale)
    if scale == 1:
        return flows, occlusions
    scaled_flows = flows + (scale - 1) * displacement(flows)
    scaled_occlusions = 1 - (1 - occlusions) * min(scale, 1.0)
    return scaled_flows, scaled_occlusions


def compose_flows(
    outer_flow: torch.Tensor, outer_occlusion: torch.Tensor, inner_flows: torch.Tensor, inner_occlusions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chain two warps: frame A = picture sampled at `outer_flow`; each new frame = frame A sampled at its inner flow.

    outer_flow (B, h, w, 2), outer_occlusion (B, h, w); inner_flows (B, F, h, w, 2), inner_occlusions (B, F, h, w).
    Returns flows (B, F, h, w, 2) that sample the picture directly, `outer(inner(x))`, and occlusions (B, F, h, w):
    a point is visible when it is visible in frame A and the point of A it comes from is visible in the picture.
    The outer displacement is read at the inner positions with border padding, so points that come from beyond
    the edge keep the displacement of the edge instead of jumping to the centre.
    """
    frames = inner_flows.shape[1]
    fields = torch.cat([displacement(outer_flow), outer_occlusion.unsqueeze(-1)], dim=-1)
    # (b, h, w, 3) -> (b f, 3, h, w): one copy of A's displacement and occlusion per new frame
    fields = rearrange(fields, "b h w c -> b 1 c h w").expand(-1, frames, -1, -1, -1).flatten(0, 1)
    grids = rearrange(inner_flows, "b f h w c -> (b f) h w c").to(fields.dtype)
    sampled = F.grid_sample(fields, grids, mode="bilinear", padding_mode="border", align_corners=False)
    sampled = rearrange(sampled, "(b f) c h w -> b f h w c", f=frames)
    flows = inner_flows + sampled[..., :2]
    occlusions = inner_occlusions * sampled[..., 2].clamp(0, 1)
    return flows, occlusions


def clip_starts(num_frames: int, clip_frames: int, overlap: int = CLIP_OVERLAP) -> list[int]:
    """First output frame of every clip needed for `num_frames` frames from clips of `clip_frames`, each clip
    starting `clip_frames - overlap` frames after the one before."""
    if clip_frames < 2:
        raise ValueError(f"chaining needs clips of at least 2 frames; this model makes {clip_frames}.")
    overlap = min(max(int(overlap), 1), clip_frames - 1)
    starts, stride = [0], clip_frames - overlap
    while starts[-1] + clip_frames < num_frames:
        starts.append(starts[-1] + stride)
    return starts


def stitch(
    video_flows: torch.Tensor,
    video_occlusions: torch.Tensor,
    clip_flows: torch.Tensor,
    clip_occlusions: torch.Tensor,
    *,
    overlap: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append a clip whose first `overlap` frames cover the last `overlap` frames of the video so far.

    video_* (B, T, h, w[, 2]); clip_* (B, L, h, w[, 2]), already composed onto the picture. Over the shared frames
    the clip's weight rises linearly, 1 / (overlap + 1) ... overlap / (overlap + 1), so neither clip's motion
    stops or starts abruptly. Returns (B, T - overlap + L, h, w[, 2]).
    """
    if overlap == 0:
        return torch.cat([video_flows, clip_flows], 1), torch.cat([video_occlusions, clip_occlusions], 1)
    weights = torch.arange(1, overlap + 1, dtype=clip_flows.dtype, device=clip_flows.device) / (overlap + 1)
    weights = weights.view(1, overlap, 1, 1)
    mixed_flows = torch.lerp(video_flows[:, -overlap:], clip_flows[:, :overlap], weights.unsqueeze(-1))
    mixed_occlusions = torch.lerp(video_occlusions[:, -overlap:], clip_occlusions[:, :overlap], weights)
    flows = torch.cat([video_flows[:, :-overlap], mixed_flows, clip_flows[:, overlap:]], dim=1)
    occlusions = torch.cat([video_occlusions[:, :-overlap], mixed_occlusions, clip_occlusions[:, overlap:]], dim=1)
    return flows, occlusions


def num_clips(num_frames: int, clip_frames: int, overlap: int = CLIP_OVERLAP) -> int:
    """How many clips (each `clip_frames` long) `num_frames` frames take; 1 when the model's clip is enough."""
    return 1 if num_frames <= clip_frames else len(clip_starts(num_frames, clip_frames, overlap))


def _shifted_callback(callback, offset: int):
    """Number the steps of every clip one after the other (a plain function callback; diffusers' callback
    objects keep their own count)."""
    from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

    if callback is None or offset == 0 or isinstance(callback, (PipelineCallback, MultiPipelineCallbacks)):
        return callback
    return lambda pipe, step_index, timestep, tensors: callback(pipe, offset + step_index, timestep, tensors)


def _pick(generator, index: int):
    return generator[index] if isinstance(generator, list) else generator


@torch.no_grad()
def generate_chained(
    pipe,
    image,
    labels: list[str],
    *,
    num_frames: int,
    num_inference_steps: int | None,
    guidance_scale: float,
    generator,
    callback_on_step_end: Callable | None,
    callback_on_step_end_tensor_inputs,
    decode_chunk_size: int | None,
    return_step_trace: bool,
    motion_scale: float,
    output_type: str,
    return_dict: bool,
    overlap: int = CLIP_OVERLAP,
):
    """`pipe(image, labels, num_frames=N)` for N beyond the model's clip: clips chained as the module docstring
    says. Arguments and output are `LFDMPipeline.__call__`'s; `callback_on_step_end` sees the steps of all clips
    numbered one after the other (clip 0 for every label, then each later clip per label), the step trace holds
    each step's clean estimate of the whole video (every clip composed with its starting frame's final flow), and
    an interrupted run returns the frames made so far."""
    clip_frames = pipe.num_frames
    starts = clip_starts(num_frames, clip_frames, overlap)
    shared = dict(
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        decode_chunk_size=decode_chunk_size,
        return_step_trace=return_step_trace,
        num_frames=clip_frames,
        output_type="pt",
    )
    pixels = pipe.preprocess_image(image)
    pyramid = pipe.encode_image(pixels)
    device, dtype = pixels.device, pixels.dtype

    # 1. The first clip, all labels in one batch, conditioned on the picture itself
    first = pipe(image, labels, generator=generator, callback_on_step_end=callback_on_step_end, **shared)
    steps_per_clip = int(num_inference_steps or pipe._default_steps())
    passes = 1
    interrupted = first.interrupted
    videos = []
    for index, label in enumerate(labels):
        flows, occlusions = first.flows[index : index + 1], first.occlusions[index : index + 1]
        trace = (first.trace_flows[:, index], first.trace_occlusions[:, index]) if return_step_trace else None
        # 2. Each later clip starts where the video so far is `overlap` frames from its end
        for start in starts[1:]:
            if interrupted:
                break
            anchor_flow, anchor_occlusion = flows[:, start].to(device, dtype), occlusions[:, start].to(device, dtype)
            anchor_frame = pipe.lfae.decode(pixels, anchor_flow, anchor_occlusion.unsqueeze(1), features=pyramid)
            offset = passes * steps_per_clip
            clip = pipe(
                anchor_frame.prediction.clamp(0, 1).float().cpu(),
                [label],
                generator=_pick(generator, index),
                callback_on_step_end=_shifted_callback(callback_on_step_end, offset),
                **shared,
            )
            passes += 1
            interrupted = clip.interrupted
            shared_frames = flows.shape[1] - start
            anchor = flows[:, start], occlusions[:, start]
            composed = compose_flows(*anchor, clip.flows, clip.occlusions)
            flows, occlusions = stitch(flows, occlusions, *composed, overlap=shared_frames)
            if trace is not None:
                # every step's clean estimate of the clip, composed with the same (final) starting frame
                steps = clip.trace_flows.shape[0]
                anchors = anchor[0].expand(steps, -1, -1, -1), anchor[1].expand(steps, -1, -1)
                composed = compose_flows(*anchors, clip.trace_flows[:, 0], clip.trace_occlusions[:, 0])
                trace = stitch(*trace, *composed, overlap=shared_frames)
        videos.append((flows[:, :num_frames], occlusions[:, :num_frames], trace))

    # 3. Every label's video to the same length (an interrupted run may have fewer frames), scaled, decoded
    length = min(video[0].shape[1] for video in videos)
    flows = torch.cat([video[0][:, :length] for video in videos]).to(device)
    occlusions = torch.cat([video[1][:, :length] for video in videos]).to(device)
    flows, occlusions = scale_motion(flows, occlusions, motion_scale)
    frames, warped = pipe.decode_flows(pixels, pyramid, flows, occlusions, decode_chunk_size)
    output = pipe._make_output(frames, warped, flows, occlusions, labels, [], [], interrupted, output_type, True)
    if return_step_trace:
        trace_flows = torch.stack([video[2][0][:, :length] for video in videos], dim=1).float()
        trace_occlusions = torch.stack([video[2][1][:, :length] for video in videos], dim=1).float()
        trace = [trace_flows, trace_occlusions, first.trace_timesteps]
        if output_type == "np":
            trace = [tensor.numpy() for tensor in trace]
        output = replace(output, trace_flows=trace[0], trace_occlusions=trace[1], trace_timesteps=trace[2])
    pipe.maybe_free_model_hooks()
    if not return_dict:
        return output.frames, output.warped, output.flows, output.occlusions
    return output
