"""Real, reconstructed and generated frames of every label for one unseen SynthFace identity: what a person judges.

Each row is one label, in three blocks of the same frames: the real test video of that identity and label (as
SynthFace renders it), the pipeline's autoencoder reconstructing that video from its frame 0 (the flows and
occlusion maps it estimates, decoded: what stage one can carry), and the video the pipeline generates from frame 0
alone (stage two). The real video says how strong each expression is meant to be at 64 px; the middle block says
whether a faint generated expression is the autoencoder's doing or the diffusion model's.

    PYTHONPATH=. python benchmarks/expression_strip.py --model checkpoints --identity 8 --out strip.png

`--identity N` is the N-th SynthFace test identity (the app's example `synthface_test_8388616.png` is 8).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image, ImageDraw

from lfdm.data.synthface.dataset import identity_name, split_identities
from lfdm.data.synthface.render import render_frames
from lfdm.evaluation.lfae import evaluate_reconstruction
from lfdm.pipeline import load_pipeline

FRAMES = (0, 4, 7, 10, 13, 15)


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


@torch.no_grad()
def reconstruct(lfae, videos: list[np.ndarray]) -> list[np.ndarray]:
    """(F, H, W, 3) uint8 videos -> each rebuilt from its frame 0 as `python -m lfdm evaluate-lfae` scores it."""
    rebuilt: list[torch.Tensor] = []
    evaluate_reconstruction(lfae, [torch.from_numpy(v).permute(3, 0, 1, 2).float() / 255 for v in videos],
                            reconstructions=rebuilt)  # fmt: skip
    return [to_uint8(video.permute(1, 2, 3, 0)) for video in rebuilt]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="checkpoints", help="pipeline folder (default: the shipped model)")
    parser.add_argument("--identity", type=int, default=8, help="index of the SynthFace test identity")
    parser.add_argument("--steps", type=int, default=25, help="DPM-Solver++ steps")
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile", type=int, default=96, help="pixels per frame in the picture")
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args()

    pipe = load_pipeline(args.model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    labels = list(pipe.labels)
    size, num_frames = pipe.lfae.config.image_size, pipe.unet.config.num_frames
    if max(FRAMES) >= num_frames:
        raise SystemExit(f"this strip shows frames up to {max(FRAMES)}; the model makes {num_frames}.")
    seed = split_identities("test", args.identity + 1)[args.identity]
    real = {label: render_frames(seed, label, 0, resolution=size, num_frames=num_frames) for label in labels}
    first = Image.fromarray(real[labels[0]][0])  # frame 0 is the neutral face in every label's video
    out = pipe(first, labels, num_inference_steps=args.steps, guidance_scale=args.guidance,
               generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    generated = to_uint8(torch.from_numpy(out.frames))  # (L, F, H, W, 3)
    reconstructed = reconstruct(pipe.lfae, list(real.values()))

    tile, pad, left, top, gap = args.tile, 3, 90, 40, 16
    block = len(FRAMES) * (tile + pad)
    canvas = Image.new("RGB", (left + 3 * block + 2 * gap, top + len(labels) * (tile + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    titles = ("real SynthFace video", "autoencoder: reconstructed from frame 0", "generated from frame 0")
    for side, title in enumerate(titles):
        x0 = left + side * (block + gap)
        draw.text((x0, 4), title, fill="black")
        for j, frame in enumerate(FRAMES):
            draw.text((x0 + j * (tile + pad) + tile // 2 - 16, 20), f"frame {frame}", fill="black")
    for i, label in enumerate(labels):
        y = top + i * (tile + pad)
        draw.text((6, y + tile // 2 - 6), label, fill="black")
        for side, frames in enumerate((real[label], reconstructed[i], generated[i])):
            for j, frame in enumerate(FRAMES):
                image = Image.fromarray(frames[frame]).resize((tile, tile), Image.NEAREST)
                canvas.paste(image, (left + side * (block + gap) + j * (tile + pad), y))
    canvas.save(args.out, optimize=True)
    print(f"wrote {args.out}: test identity {identity_name(seed)}, {len(labels)} labels, {args.steps} steps")


if __name__ == "__main__":
    main()
