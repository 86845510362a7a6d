"""Load the authors' released checkpoints (`RegionMM_*.pth`, `flowdiff_*.pth`) into our models.

Files are read with `torch.load(weights_only=True)` only: a `.pth` from the internet is untrusted, and the released
files hold nothing but tensors, numbers and strings. Loading is strict: every tensor is used and none is missing;
a mismatch raises one error that lists the missing, unexpected and wrongly shaped keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch


def read_checkpoint(checkpoint: str | os.PathLike | Mapping) -> Mapping:
    """A checkpoint dict from a path (read with `weights_only=True`) or the dict itself."""
    if isinstance(checkpoint, Mapping):
        return checkpoint
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist; pass the path of a released .pth file.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors come in many types; all mean "not a plain tensor checkpoint"
        raise ValueError(
            f"could not read {path!r} as a weights-only PyTorch checkpoint ({error}). Released LFDM checkpoints "
            "load this way; a file that does not is damaged or not a checkpoint."
        ) from error


def load_state_dict_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Copy `state_dict` into `module`, or raise one ValueError listing missing, unexpected and mis-shaped keys."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshaped = sorted(
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(expected) & set(state_dict)
        if tuple(state_dict[key].shape) != tuple(expected[key].shape)
    )
    if missing or unexpected or misshaped:
        lines = [f"{source} does not match the model built from the given parameters:"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)):
            if keys:
                shown = keys[:20] + ([f"... and {len(keys) - 20} more"] if len(keys) > 20 else [])
                lines.append(f"  {title} ({len(keys)}): " + ", ".join(shown))
        lines.append("Check that the model parameters (the YAML config / preset) belong to this checkpoint.")
        raise ValueError("\n".join(lines))
    module.load_state_dict(state_dict, strict=True)


# --- stage one: the latent flow autoencoder (RegionMM_*.pth) -------------------------------------------------------


# --- stage two: the flow diffusion U-Net (flowdiff_*.pth) ----------------------------------------------------------
