"""Can the LFAE's region predictor split its regions between two independently moving objects?

A check of the gradient path from the reconstruction loss to the region heat maps, on data where one region per
object is the only way to reconstruct well: a grey 64 px frame with a red and a blue square, each moved by up to
6 px between the reference and the driving frame, independently. Trains a small LFAE (the SynthFace 64 px config
with K regions and narrower layers) for a few hundred steps on the CPU, then prints, for test frames, each
square's distance to its nearest region centre and the share of regions nearer to each square.

    PYTHONPATH=. python benchmarks/region_toy.py --out runs/region-toy --steps 400 --regions 4

Measured on the 2-core VM (2026-11-27, 2 threads, 0.45 s/step, 3 minutes): after 400 steps the nearest region
centre is 4.9 px from the red square and 6.7 px from the blue one (the squares are about 30 px apart), with 62 % /
38 % of the regions nearer to each; the reconstructions move both squares. So the regions do follow independent
motions; their collapse onto one blob on SynthFace faces comes from the data (head motion dominates the small
brow and mouth motions), not from a broken gradient (benchmarks/RESULTS.md, stage one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lfdm.models import LatentFlowAutoencoder
from lfdm.training.config import RunConfig, load_config
from lfdm.training.lfae import train

SIZE = 64
SIDE = 12
COLOURS = ((0.9, 0.1, 0.1), (0.1, 0.2, 0.9))
CONFIG = Path(__file__).resolve().parents[1] / "lfdm" / "configs" / "synthface64.yaml"


def render(centres: list[tuple[float, float]]) -> torch.Tensor:
    """Two squares at (x, y) pixel centres on grey -> (3, SIZE, SIZE) in [0, 1]."""
    image = np.full((3, SIZE, SIZE), 0.5, np.float32)
    for (x, y), colour in zip(centres, COLOURS, strict=True):
        left, top = round(x) - SIDE // 2, round(y) - SIDE // 2
        image[:, max(top, 0) : top + SIDE, max(left, 0) : left + SIDE] = np.array(colour, np.float32)[:, None, None]
    return torch.from_numpy(image)


def draw_centres(rng: np.random.Generator) -> list[tuple[float, float]]:
    """The red square in the left half, the blue one in the right half."""
    return [(rng.uniform(14, 24), rng.uniform(20, 44)), (rng.uniform(40, 50), rng.uniform(20, 44))]


class TwoSquares(Dataset):
    """Pair items (reference, driving): each square moves by up to 6 px in x and y, independently."""

    def __len__(self) -> int:
        return 1_000_000

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng(index)
        reference = draw_centres(rng)
        driving = [(x + rng.uniform(-6, 6), y + rng.uniform(-6, 6)) for x, y in reference]
        return {"reference": render(reference), "driving": render(driving)}


def toy_config(out: Path, steps: int, regions: int) -> RunConfig:
    sections = load_config(CONFIG).to_dict()
    sections["lfae"].update(
        num_regions=regions, region_block_expansion=16, block_expansion=16, flow_block_expansion=16,
        num_bottleneck_blocks=1,
    )  # fmt: skip
    sections["train_lfae"].update(
        output_dir=str(out), max_steps=steps, sample_every=100, checkpoint_every=0, lr_milestones=[0.9]
    )
    return RunConfig.from_dict(sections, name="region-toy")


def report(model: LatentFlowAutoencoder, num_frames: int = 16) -> None:
    rng = np.random.default_rng(12345)
    nearest = {"red": [], "blue": []}
    owners = {"red": 0, "blue": 0}
    with torch.inference_mode():
        for _ in range(num_frames):
            squares = np.array(draw_centres(rng))
            regions = model.region_predictor(render(squares.tolist())[None])
            centres = ((regions.shift[0] + 1) / 2 * SIZE - 0.5).numpy()  # (K, 2) in pixels
            distance = np.linalg.norm(centres[:, None] - squares[None], axis=-1)  # (K, 2)
            for column, name in enumerate(nearest):
                nearest[name].append(distance[:, column].min())
                owners[name] += int((distance.argmin(axis=1) == column).sum())
    total = sum(owners.values())
    for name in nearest:
        print(
            f"{name} square: nearest region centre {np.mean(nearest[name]):.1f} px away on average; "
            f"{100 * owners[name] / total:.0f} % of the regions are nearer to it than to the other square"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/region-toy"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--regions", type=int, default=4)
    args = parser.parse_args()
    run = train(toy_config(args.out, args.steps, args.regions), dataset=TwoSquares())
    report(LatentFlowAutoencoder.from_pretrained(run / "model").eval())


if __name__ == "__main__":
    main()
