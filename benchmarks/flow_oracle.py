"""How far can warping frame 0 with a coarse flow go? A ceiling for the LFAE's reconstruction PSNR.

For every frame of the SynthFace test videos that `python -m lfdm evaluate-lfae --data synthface` scores, find by
gradient descent the backward flow on a coarse grid (16 x 16 = the 64 px LFAE's latent size), bilinearly
up-sampled to the frame, that warps frame 0 closest to that frame (MSE), and report the PSNR of that warp next to
the copy-frame-0 baseline, averaged over the same frames as `evaluate-lfae`. The LFAE warps features rather than
pixels and can paint occluded parts, so this is not a strict bound, but it says how much of the +5 dB target
plain warping at the latent size can carry.

With `--lfae DIR`, the same for that autoencoder's own decoder: starting from the flow and occlusion map its
estimator gives for each frame, find by gradient descent the flow and occlusion map (the latents the diffusion
model generates) that make `decode(frame 0, flow, occlusion)` closest to the frame. The gap between the two says
how much of the reconstruction error is the estimator's (regions and flow predictor) and how much the decoder's.
With `--regions` as well, optimise instead the driving frame's region centres and shapes and the background
affine that the flow predictor turns into the flow and occlusion: what the region motion model can express.

    PYTHONPATH=. python benchmarks/flow_oracle.py --num-identities 10 --size 16
    PYTHONPATH=. python benchmarks/flow_oracle.py --num-identities 1 --lfae checkpoints/lfae --iterations 200
    PYTHONPATH=. python benchmarks/flow_oracle.py --num-identities 1 --lfae checkpoints/lfae --iterations 200 --regions

Measured on the 2-core VM (2026-11-27, 1 thread next to two training runs, 107 s): 70 videos, 1,050 frames; copy
frame 0 26.98 dB, best 16 x 16 warp 33.97 dB (+6.99 dB), against the then shipped LFAE's 30.11 dB (+3.13).
With `--lfae checkpoints/lfae --num-identities 1 --iterations 200` (the runs 7-8 LFAE, 9 minutes): 7 videos, 105
frames; copy frame 0 28.31 dB, the LFAE's estimate 31.55 dB (+3.24), the best flow and occlusion for its decoder
35.91 dB (+7.60); on 2 identities (14 videos) 27.25 / 30.59 / 34.75 dB: the decoder and the latent format carry
+7.5 dB, the estimator delivers less than half of it. With `--regions` (26 minutes): the best motion of the ten
regions and the background 33.13 dB (+4.82). Gradient descent finds good latents, not the best: lower bounds.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
import torch.nn.functional as F

from lfdm.data.factory import DataConfig
from lfdm.evaluation.lfae import evaluation_videos
from lfdm.metrics import psnr
from lfdm.models import LatentFlowAutoencoder


def descend(latents: list[torch.Tensor], render, targets: torch.Tensor, iterations: int, lr: float) -> torch.Tensor:
    """Adam on `latents` so that `render()` comes closest to `targets` (MSE); returns the last render."""
    optimizer = torch.optim.Adam(latents, lr=lr)
    for _ in range(iterations):
        loss = (render() - targets).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return render()


def best_warp(reference: torch.Tensor, targets: torch.Tensor, size: int, iterations: int) -> torch.Tensor:
    """reference (1, 3, H, W), targets (N, 3, H, W) -> the reference warped by each target's optimised flow."""
    count, _, height, width = targets.shape
    identity = torch.eye(2, 3).expand(count, 2, 3)
    base = F.affine_grid(identity, [count, 3, height, width], align_corners=False)
    offsets = torch.zeros(count, 2, size, size, requires_grad=True)
    sources = reference.expand(count, -1, -1, -1)

    def warp() -> torch.Tensor:
        dense = F.interpolate(offsets, size=(height, width), mode="bilinear", align_corners=False)
        return F.grid_sample(sources, base + dense.permute(0, 2, 3, 1), align_corners=False, padding_mode="border")

    return descend([offsets], warp, targets, iterations, lr=0.01).clamp(0, 1)


def best_decode(model, reference: torch.Tensor, targets: torch.Tensor, iterations: int, *, regions: bool = False):
    """reference (1, 3, H, W), targets (N, 3, H, W) -> (the LFAE's reconstruction of each target from its own
    estimate, its reconstruction from the optimised latents): the flow and occlusion map fed to the decoder, or
    with `regions` the driving frame's region centres and shapes and the background affine fed to the flow
    predictor (what the motion model can express at best, whatever the region predictor sees)."""
    count = targets.shape[0]
    references = reference.expand(count, -1, -1, -1)
    with torch.no_grad():
        features = model.encode_pyramid(reference)
        estimate = model.estimate_flow(references, targets)
        estimated = model.decode(reference, estimate.flow, estimate.occlusion, features=features).prediction
    if regions:
        driving = estimate.driving_regions
        shift, affine = driving.shift.clone().requires_grad_(True), driving.affine.clone().requires_grad_(True)
        background = estimate.background.clone().requires_grad_(True)
        latents, learning_rate = [shift, affine, background], 0.002

        def decode() -> torch.Tensor:
            covar = affine @ affine.transpose(-1, -2)  # what the region predictor's SVD factors multiply back to
            moved = dataclasses.replace(driving, shift=shift, covar=covar, affine=affine)
            motion = model.flow_predictor(references, moved, estimate.reference_regions, background)
            return model.decode(reference, motion.flow, motion.occlusion, features=features).prediction
    else:
        flow = estimate.flow.clone().requires_grad_(True)
        occlusion_logits = torch.logit(estimate.occlusion.clamp(1e-4, 1 - 1e-4)).requires_grad_(True)
        latents, learning_rate = [flow, occlusion_logits], 0.003

        def decode() -> torch.Tensor:
            return model.decode(reference, flow, torch.sigmoid(occlusion_logits), features=features).prediction

    return estimated, descend(latents, decode, targets, iterations, lr=learning_rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-identities", type=int, default=10, help="SynthFace test identities (x 7 labels)")
    parser.add_argument("--size", type=int, default=16, help="flow grid side (the 64 px LFAE's latent: 16)")
    parser.add_argument("--iterations", type=int, default=300, help="Adam steps per video")
    parser.add_argument("--lfae", help="an LFAE folder: optimise the flow and occlusion fed to its decoder instead")
    parser.add_argument("--regions", action="store_true", help="with --lfae: optimise the regions' motion instead")
    args = parser.parse_args()

    model = None
    if args.lfae:
        model = LatentFlowAutoencoder.from_pretrained(args.lfae).eval().requires_grad_(False)
    resolution = 64 if model is None else model.config.image_size
    data = DataConfig(dataset="synthface", resolution=resolution, num_frames=16, num_identities=args.num_identities)
    best = "best region motion" if args.regions else "best flow + occlusion"
    scores = {"copy frame 0": [], "the LFAE's estimate": [], best: [], "best warp of frame 0": []}
    for video in evaluation_videos(data):
        frames = video.transpose(0, 1)  # (F, 3, H, W)
        reference, targets = frames[:1], frames[1:]
        scores["copy frame 0"].append(psnr(reference.expand_as(targets), targets))
        if model is None:
            scores["best warp of frame 0"].append(
                psnr(best_warp(reference, targets, args.size, args.iterations), targets)
            )
        else:
            estimated, optimised = best_decode(model, reference, targets, args.iterations, regions=args.regions)
            scores["the LFAE's estimate"].append(psnr(estimated, targets))
            scores[best].append(psnr(optimised, targets))
    copied = scores["copy frame 0"]
    grid = f"flow grid {args.size} x {args.size}" if model is None else f"the decoder of {args.lfae}"
    print(f"{len(copied)} videos, {sum(len(p) for p in copied)} frames; {grid}")
    copy_db = torch.cat(copied).mean().item()
    for name, values in scores.items():
        if values:
            db = torch.cat(values).mean().item()
            print(f"{name:<22}{db:6.2f} dB  ({db - copy_db:+.2f} dB)")


if __name__ == "__main__":
    main()
