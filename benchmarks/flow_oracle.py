"""How far can warping frame 0 with a coarse flow go? A ceiling for the LFAE's reconstruction PSNR.

For every frame of the SynthFace test videos that `python -m lfdm evaluate-lfae --data synthface` scores, find by
gradient descent the backward flow on a coarse grid (16 x 16 = the 64 px LFAE's latent size), bilinearly
up-sampled to the frame, that warps frame 0 closest to that frame (MSE), and report the PSNR of that warp next to
the copy-frame-0 baseline, averaged over the same frames as `evaluate-lfae`. The LFAE warps features rather than
pixels and can paint occluded parts, so this is not a strict bound, but it says how much of the +5 dB target
plain warping at the latent size can carry.

    PYTHONPATH=. python benchmarks/flow_oracle.py --num-identities 10 --size 16

Measured on the 2-core VM (2026-11-27, 1 thread next to two training runs, 107 s): 70 videos, 1,050 frames; copy
frame 0 26.98 dB, best 16 x 16 warp 33.97 dB (+6.99 dB), against the shipped LFAE's 30.11 dB (+3.13).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from lfdm.evaluation.lfae import evaluation_videos
from lfdm.evaluation.metrics import psnr
from lfdm.training.config import DataConfig


def best_warp(reference: torch.Tensor, targets: torch.Tensor, size: int, iterations: int) -> torch.Tensor:
    """reference (1, 3, H, W), targets (N, 3, H, W) -> the reference warped by each target's optimised flow."""
    count, _, height, width = targets.shape
    identity = torch.eye(2, 3).expand(count, 2, 3)
    base = F.affine_grid(identity, [count, 3, height, width], align_corners=False)
    offsets = torch.zeros(count, 2, size, size, requires_grad=True)
    optimizer = torch.optim.Adam([offsets], lr=0.01)
    sources = reference.expand(count, -1, -1, -1)

    def warp() -> torch.Tensor:
        dense = F.interpolate(offsets, size=(height, width), mode="bilinear", align_corners=False)
        return F.grid_sample(sources, base + dense.permute(0, 2, 3, 1), align_corners=False, padding_mode="border")

    for _ in range(iterations):
        loss = (warp() - targets).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return warp().clamp(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-identities", type=int, default=10, help="SynthFace test identities (x 7 labels)")
    parser.add_argument("--size", type=int, default=16, help="flow grid side (the 64 px LFAE's latent: 16)")
    parser.add_argument("--iterations", type=int, default=300, help="Adam steps per video")
    args = parser.parse_args()

    data = DataConfig(dataset="synthface", resolution=64, num_frames=16, num_identities=args.num_identities)
    warped, copied = [], []
    for video in evaluation_videos(data):
        frames = video.transpose(0, 1)  # (F, 3, H, W)
        reference, targets = frames[:1], frames[1:]
        warped.append(psnr(best_warp(reference, targets, args.size, args.iterations), targets))
        copied.append(psnr(reference.expand_as(targets), targets))
    warp_db, copy_db = torch.cat(warped).mean().item(), torch.cat(copied).mean().item()
    print(f"{len(warped)} videos, {sum(len(p) for p in warped)} frames; flow grid {args.size} x {args.size}")
    print(f"copy frame 0        {copy_db:6.2f} dB")
    print(f"best warp of frame 0 {warp_db:6.2f} dB  ({warp_db - copy_db:+.2f} dB)")


if __name__ == "__main__":
    main()
