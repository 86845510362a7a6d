"""Edits of latent flow sequences: motion strength, flow composition, and videos longer than the model's clip.

Flows are absolute backward sampling grids (..., h, w, 2) in [-1, 1], x first; occlusion maps (..., h, w) in
[0, 1], 1 = visible (`lfdm.latents`). A flow's *displacement* is measured from `resting_grid`, the grid that
leaves a picture where it is under the LFAE's `grid_sample(align_corners=False)` (the MRAA "identity grid" of
`identity_grid` would shrink it), so a zero displacement decodes to the still picture.

Longer videos (`continue_video`; `LFDMPipeline.sample_chained_flows` samples the clips): the U-Net knows
`pipe.num_frames` (L) frame positions, so a longer video is made of clips, and every frame still warps the ORIGINAL
picture (a generated frame is never warped again). The first clip is the usual video. Every later clip is sampled
from the picture too, and only the motion of its second half is used: how its frames L/2 + 1 ... L - 1 move with
respect to its frame L/2 (`relative_motion`), composed with the flow of the video's last frame so far
(`compose_flows`). The motion that made the first clip's action (a model trained on clips that start still starts
the action in every clip) is thus not started again on top of itself, later clips carry on from where the video is,
and where clips meet the video moves as it does inside a clip.

Everything here is tensors in, tensors out: the pipeline samples, this module only edits what was sampled.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from lfdm.latents import resting_grid

logger = logging.getLogger(__name__)

INVERSION_ITERATIONS = 8  # fixed-point steps of `invert_at`: the error shrinks ~10x per step for these motions
MAX_MOTION_SCALE = 10.0  # beyond this the displacement leaves the picture for every frame


def check_motion_scale(motion_scale: float) -> float:
    """`motion_scale` as a float, or a ValueError that says the allowed range."""
    try:
        scale = float(motion_scale)
    except (TypeError, ValueError):
        raise ValueError(
            f"`motion_scale` must be a number from 0 to {MAX_MOTION_SCALE:g}; got {motion_scale!r}."
        ) from None
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
    merely stretched. The scale is not checked here: the pipeline's `check_inputs` checks it (`check_motion_scale`)
    before any work is done.
    """
    scale = float(motion_scale)
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


def invert_at(flow: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Where `flow` comes from: for flow (B, h, w, 2) and points (B, F, h, w, 2), the x with flow(x) = point.

    Fixed-point iteration x <- point - D(x) with D the flow's displacement (read with border padding), which
    converges while the displacement changes by less than its own distance across the picture (any flow that does
    not fold the picture over itself).
    """
    frames = points.shape[1]
    field = rearrange(displacement(flow), "b h w c -> b 1 c h w").expand(-1, frames, -1, -1, -1).flatten(0, 1)
    targets = rearrange(points, "b f h w c -> (b f) h w c")
    estimate = targets
    for _ in range(INVERSION_ITERATIONS):
        moved = F.grid_sample(field, estimate, mode="bilinear", padding_mode="border", align_corners=False)
        estimate = targets - rearrange(moved, "n c h w -> n h w c")
    return rearrange(estimate, "(b f) h w c -> b f h w c", f=frames)


def relative_motion(flows: torch.Tensor, occlusions: torch.Tensor, reference: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The motion of frames reference + 1 ... F - 1 of a video with respect to its frame `reference`.

    flows (B, F, h, w, 2) and occlusions (B, F, h, w) describe frames of the picture; returns flows (B, n, h, w, 2)
    that sample frame `reference` to make each later frame, `reference^-1(flow_t(x))`, and occlusions (B, n, h, w):
    the part of each frame's occlusion that is new since frame `reference` (its visibility divided by that of the
    point of frame `reference` it comes from, at most 1).
    """
    later = flows[:, reference + 1 :]
    motion = invert_at(flows[:, reference], later)
    frames = later.shape[1]
    reference_occlusion = repeat(occlusions[:, reference], "b h w -> (b f) 1 h w", f=frames)
    seen = F.grid_sample(reference_occlusion, rearrange(motion, "b f h w c -> (b f) h w c"), padding_mode="border",
                         align_corners=False)  # fmt: skip
    seen = rearrange(seen, "(b f) 1 h w -> b f h w", f=frames)
    relative = (occlusions[:, reference + 1 :] / seen.clamp_min(1e-3)).clamp(0, 1)
    return motion, relative


def new_frames_per_clip(clip_frames: int) -> int:
    """Frames each later clip adds: those after its middle frame."""
    return clip_frames - 1 - clip_frames // 2


def num_clips(num_frames: int, clip_frames: int) -> int:
    """How many clips (each `clip_frames` long) `num_frames` frames take; 1 when the model's clip is enough."""
    if num_frames <= clip_frames:
        return 1
    if clip_frames < 3:
        raise ValueError(f"videos longer than the model's clip need clips of 3 frames or more; it makes {clip_frames}.")
    return 1 + math.ceil((num_frames - clip_frames) / new_frames_per_clip(clip_frames))


def continue_video(
    flows: torch.Tensor, occlusions: torch.Tensor, clip_flows: torch.Tensor, clip_occlusions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append a clip's second-half motion to a video: flows (B, T, h, w, 2), occlusions (B, T, h, w) so far; a
    clip of L frames of the same picture -> (B, T + L - 1 - L // 2, ...), every frame still sampling the picture.

    The first appended frame is the midpoint of the video's last frame and the second appended one: the clip's
    motion starts from another pose than the video's, and a fast first step of it (a blink, a late rise) would
    otherwise show as one jump where the clips meet; halving it over two frames keeps the seam as smooth as the
    inside of a clip.
    """
    motion, relative = relative_motion(clip_flows, clip_occlusions, clip_flows.shape[1] // 2)
    new_flows, new_occlusions = compose_flows(flows[:, -1], occlusions[:, -1], motion, relative)
    if new_flows.shape[1] >= 2:
        new_flows[:, 0] = (flows[:, -1] + new_flows[:, 1]) / 2
        new_occlusions[:, 0] = (occlusions[:, -1] + new_occlusions[:, 1]) / 2
    return torch.cat([flows, new_flows], dim=1), torch.cat([occlusions, new_occlusions], dim=1)


def continue_step_trace(
    trace: tuple[torch.Tensor, torch.Tensor],
    last_frame: tuple[torch.Tensor, torch.Tensor],
    clip_trace_flows: torch.Tensor,
    clip_trace_occlusions: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append each sampling step's estimate of a later clip to the step trace, as `continue_video` appends the clip.

    trace: flows (S*B, T, h, w, 2) and occlusions (S*B, T, h, w) so far, steps first; last_frame: the video's final
    flow (B, 1, h, w, 2) and occlusion (B, 1, h, w); clip_trace_flows (S, B, L, h, w, 2) and clip_trace_occlusions
    (S, B, L, h, w), each step's estimate of the clip. Every step's estimate is chained onto the same final frame as
    the video itself, so the trace shows each step of the clip as the video would have had it.
    """
    steps = clip_trace_flows.shape[0]
    anchors = [repeat(tensor, "b 1 ... -> (s b) 1 ...", s=steps) for tensor in last_frame]
    chained = continue_video(*anchors, clip_trace_flows.flatten(0, 1), clip_trace_occlusions.flatten(0, 1))
    # each chained video starts with its anchor, the video's last frame, which the trace already holds
    return tuple(torch.cat([old, new[:, 1:]], dim=1) for old, new in zip(trace, chained, strict=True))
