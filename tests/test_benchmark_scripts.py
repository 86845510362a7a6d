"""The scripts under benchmarks/ that print figures: their building blocks work on small inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from lfdm.metrics import psnr
from lfdm.models import LatentFlowAutoencoder
from lfdm.testing import tiny_lfae_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flow_oracle_finds_a_warp_much_closer_than_copying():
    oracle = load_script("flow_oracle")
    smooth = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0)), 9, 1)
    reference, target = smooth[..., :32, :32], smooth[..., 1:33, 2:34]  # the content moves by (2, 1) px
    warped = oracle.best_warp(reference, target, size=4, iterations=150)
    assert warped.shape == target.shape
    assert psnr(warped, target).item() > psnr(reference, target).item() + 6


@pytest.mark.parametrize("regions", [False, True])
def test_flow_oracle_finds_latents_its_decoder_turns_into_closer_frames(regions):
    oracle = load_script("flow_oracle")
    torch.manual_seed(0)
    model = LatentFlowAutoencoder(**tiny_lfae_config(width=8, num_regions=4)).eval().requires_grad_(False)
    frames = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    estimated, optimised = oracle.best_decode(model, frames[:1], frames[1:], iterations=20, regions=regions)
    assert estimated.shape == optimised.shape == (3, 3, 32, 32)
    with torch.no_grad():
        estimate = model.estimate_flow(frames[:1].expand(3, -1, -1, -1), frames[1:])
        again = model.decode(frames[:1], estimate.flow, estimate.occlusion).prediction
    assert torch.allclose(estimated, again, atol=1e-6), "the first output is the LFAE's own reconstruction"
    assert psnr(optimised, frames[1:]).mean() > psnr(estimated, frames[1:]).mean() + 0.05


def test_region_toy_moves_each_square_on_its_own():
    toy = load_script("region_toy")
    item = toy.TwoSquares()[3]
    reference, driving = item["reference"], item["driving"]
    assert reference.shape == driving.shape == (3, toy.SIZE, toy.SIZE)
    red = lambda image: (image[0] > 0.8).nonzero().float().mean(0)  # noqa: E731
    blue = lambda image: (image[2] > 0.8).nonzero().float().mean(0)  # noqa: E731
    assert not torch.allclose(red(reference), red(driving)) and not torch.allclose(blue(reference), blue(driving))
    assert not torch.allclose(red(driving) - red(reference), blue(driving) - blue(reference))
    config = toy.toy_config(Path("unused"), steps=5, regions=3)
    assert config.lfae["num_regions"] == 3 and config.train_lfae.max_steps == 5


def test_real_faces_variants_and_flows_on_the_tiny_pipeline():
    import numpy as np
    from PIL import Image

    from lfdm.testing import make_tiny_pipeline

    real_faces = load_script("real_faces")
    photo = np.asarray(Image.open(real_faces.EXAMPLES / "astronaut.png").convert("RGB"))
    pictures = real_faces.variants(photo)
    assert len(pictures) == 6 and pictures["small JPEG (half size, quality 30)"].shape == (160, 160, 3)
    assert np.array_equal(pictures["mirrored"], photo[:, ::-1])
    pipe = make_tiny_pipeline()
    flows, output = real_faces.generate_flows(pipe, pictures["grayscale"], [0, 1], 1, face="auto")
    assert set(flows) == set(pipe.labels) and flows["smile"].shape == (2, 4, 8, 8, 2)
    assert output.face_box is not None, "the grayscale portrait's face is found"
    inputs = real_faces.synthface_inputs(1)
    assert len(inputs) == 3 and all(image.shape == (64, 64, 3) for image in inputs.values())
    flat, photographic, smiling = inputs.values()
    assert np.abs(flat.astype(int) - photographic.astype(int)).mean() > 3 and not np.array_equal(flat, smiling)
    sheet = real_faces.picture(pipe, photo, 1, 0)
    assert sheet.size[0] > 3 * 320 and sheet.size[1] >= 3 * 320, "three full-size frames per label"
