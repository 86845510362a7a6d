"""Warm starts: a model begins with the weights of another of the same architecture (`init_from` of both stages)."""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def init_weights(model: torch.nn.Module, source: torch.nn.Module, name: str) -> None:
    """Copy the weights of `source` (same architecture) into `model`: a warm start.

    Every parameter of `source` must exist in `model` with the same shape. `model`'s own values are kept for
    tensors that `source` lacks (new in this config, such as the U-Net's `frame_positions`) and for buffers whose
    shape follows from the config, not from training (the anti-aliasing kernels of a changed
    `region_scale_factor`); buffers of `source` that `model` has no use for (the kernel, at
    `region_scale_factor: 1`) are left out. All three are logged.
    """
    parameters = {key for key, _ in model.named_parameters()}
    source_parameters = {key for key, _ in source.named_parameters()}
    own, theirs = model.state_dict(), source.state_dict()
    unused = [key for key in theirs if key not in own and key not in source_parameters]
    theirs = {key: value for key, value in theirs.items() if key not in unused}
    kept = [key for key in own if key not in theirs or (key not in parameters and theirs[key].shape != own[key].shape)]
    model.load_state_dict({**theirs, **{key: own[key] for key in kept}})
    if kept:
        logger.info("%s: kept this config's own %s (new, or shaped by the config)", name, kept)
    if unused:
        logger.info("%s: left out the source's %s (buffers this config does not use)", name, unused)
