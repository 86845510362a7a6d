"""Exponential moving average (EMA) of a model's weights, checkpointed with the run.

    ema = ExponentialMovingAverage(model, decay=0.999)
    ...after every optimiser step:  ema.update(model, step)
    ema.model                        # the averaged copy: sample and export with it

After step n (counting from `start_step`) each averaged weight moves as w_ema <- d w_ema + (1 - d) w with
d = min(decay, (1 + n) / (10 + n)) when `warmup` is on (so the average forgets the random initial weights within
the first few hundred steps), else d = decay. Before `start_step` the copy just follows the weights. Buffers (e.g.
a fixed null label embedding) are copied as they are.

`state_dict` / `load_state_dict` hold the averaged tensors and the update count, so `accelerator.register_for_
checkpointing(ema)` saves and restores it exactly with every checkpoint.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)


class ExponentialMovingAverage:
    """An averaged deep copy of `model` (same device and dtype), kept in eval mode with gradients off.

    Args:
        model: the model being trained (unwrapped: not a DDP wrapper).
        decay: the largest decay d in [0, 1); 0 makes the copy equal the weights after each update.
        warmup: ramp d up as (1 + n) / (10 + n) until it reaches `decay`.
        start_step: optimiser steps before averaging starts (until then the copy follows the weights).
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.999, warmup: bool = True, start_step: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"the EMA decay must be in [0, 1); got {decay}.")
        if start_step < 0:
            raise ValueError(f"the EMA start step must be >= 0; got {start_step}.")
        self.decay, self.warmup, self.start_step = decay, warmup, start_step
        self.num_updates = 0  # averaging updates made so far (steps after start_step)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next averaging update uses."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold the weights of `model` after optimiser step `step` (1-based) into the average."""
        if step <= self.start_step:
            self.copy_from(model)
            return
        decay = self.current_decay()
        averaged = dict(self.model.named_parameters())
        for name, parameter in model.named_parameters():
            averaged[name].lerp_(parameter.detach().to(averaged[name].dtype), 1.0 - decay)
        self._copy_buffers(model)
        self.num_updates += 1

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Set the average to the weights of `model`."""
        self.model.load_state_dict(model.state_dict())

    @torch.no_grad()
    def _copy_buffers(self, model: nn.Module) -> None:
        own = dict(self.model.named_buffers())
        for name, buffer in model.named_buffers():
            own[name].copy_(buffer)

    def state_dict(self) -> dict:
        """The averaged tensors (parameters and buffers, by name, on the CPU) and the update count."""
        tensors = {name: tensor.detach().cpu().clone() for name, tensor in self.model.state_dict().items()}
        return {"num_updates": self.num_updates, "weights": tensors}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        self.num_updates = int(state["num_updates"])
        self.model.load_state_dict(state["weights"])
