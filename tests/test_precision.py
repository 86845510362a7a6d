"""Precision: bfloat16 runs without hangs or NaNs, `dtype="auto"` picks it only where it is fast, and its output
stays close to float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lfdm import runtime
from lfdm.images import preprocess_image
from lfdm.latents import identity_grid
from lfdm.metrics import psnr
from lfdm.models.blocks import AntiAliasDownsample, at_least_float32, warp
from lfdm.pipeline import load_pipeline

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "assets" / "examples").glob("synthface_*.png"))
AMX_FLAGS = frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})


@pytest.fixture
def auto_dtype(monkeypatch):
    """`dtype="auto"` decided by the (mocked) CPU, not by the suite's LFDM_DTYPE=float32."""
    monkeypatch.delenv("LFDM_DTYPE", raising=False)
    return monkeypatch


# --- no hang, no NaN ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_large_blur_under_bfloat16_autocast_returns_quickly_and_matches_float32():
    # The case that hung on an AMX-BF16 CPU inside oneDNN's bfloat16 depthwise kernel: a 29x29 blur (scale 1/8) of
    # a channels-last (4, 3, 60, 60) batch under bfloat16 autocast.
    blur = AntiAliasDownsample(3, 0.125)
    assert tuple(blur.weight.shape) == (3, 1, 29, 29)
    x = torch.rand(4, 3, 60, 60, generator=torch.Generator().manual_seed(0)).contiguous(
        memory_format=torch.channels_last
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        blurred = blur(x)
    assert blurred.dtype == torch.float32, "the blur keeps its input's precision"
    torch.testing.assert_close(blurred, blur(x.contiguous()), rtol=0, atol=1e-6)


@pytest.mark.timeout(60)
def test_blur_of_a_bfloat16_network_stays_bfloat16():
    blur = AntiAliasDownsample(3, 0.125).to(torch.bfloat16)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    out = blur(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, 8, 8)
    torch.testing.assert_close(out.float(), AntiAliasDownsample(3, 0.125)(x), rtol=0, atol=1e-2)


def test_warp_of_batch_repeated_bfloat16_features_is_finite_and_float32_exact():
    # torch's CPU bfloat16 grid_sample writes NaN into part of its output for channels-last features repeated over
    # the batch (how the LFAE decodes one reference with many flows); warp samples in float32 instead.
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(1, 32, 64, 64, generator=generator).contiguous(memory_format=torch.channels_last)
    repeated = features.to(torch.bfloat16).expand(112, -1, -1, -1)
    flows = identity_grid(16, 16).expand(112, 16, 16, 2) + 0.05 * torch.randn(112, 16, 16, 2, generator=generator)
    warped = warp(repeated, flows)
    assert warped.dtype == torch.float32
    assert torch.isfinite(warped).all()
    exact = warp(features.to(torch.bfloat16).float().expand(112, -1, -1, -1), flows)
    torch.testing.assert_close(warped, exact, rtol=0, atol=1e-6)


def test_at_least_float32_keeps_a_batch_repeated_view_a_view():
    one = torch.rand(1, 4, 8, 8, dtype=torch.bfloat16)
    converted = at_least_float32(one.expand(50, -1, -1, -1))
    assert converted.dtype == torch.float32 and converted.stride(0) == 0, "one copy converted, not fifty"
    double = torch.rand(2, 3, dtype=torch.float64)
    assert at_least_float32(double) is double, "higher precision is left alone"


# --- dtype="auto" ----------------------------------------------------------------------------------------------


def test_auto_dtype_is_bfloat16_only_on_a_cpu_with_amx(auto_dtype):
    auto_dtype.setattr(runtime, "cpu_flags", lambda: AMX_FLAGS)
    assert runtime.resolve_dtype("auto", "cpu") == torch.bfloat16
    assert runtime.resolve_dtype(None, "cpu") == torch.bfloat16
    assert runtime.resolve_dtype("auto", "cuda") == torch.float32, "at batch 1 a GPU is no faster in bfloat16"
    assert runtime.resolve_dtype("float32", "cpu") == torch.float32, "an explicit dtype always wins"
    assert runtime.resolve_dtype(torch.float16, "cpu") == torch.float16
    auto_dtype.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert runtime.resolve_dtype("auto", "cpu") == torch.float32, "without AMX, bfloat16 is slower than float32"
    with pytest.raises(ValueError, match="unknown dtype 'half'"):
        runtime.resolve_dtype("half", "cpu")


def test_lfdm_dtype_environment_variable_replaces_the_cpu_rule(auto_dtype):
    auto_dtype.setattr(runtime, "cpu_flags", lambda: AMX_FLAGS)
    auto_dtype.setenv("LFDM_DTYPE", "float32")
    assert runtime.resolve_dtype("auto", "cpu") == torch.float32
    assert runtime.resolve_dtype("bfloat16", "cpu") == torch.bfloat16, "an explicit dtype wins over the variable"
    auto_dtype.setenv("LFDM_DTYPE", "fp8")
    with pytest.raises(ValueError, match="LFDM_DTYPE"):
        runtime.resolve_dtype("auto", "cpu")


def test_cpu_flags_reads_this_machine():
    flags = runtime.cpu_flags()
    if Path("/proc/cpuinfo").is_file():
        assert flags, "Linux lists the CPU's flags"
    assert runtime.cpu_has_amx_bf16() == ("amx_bf16" in flags)


def test_load_pipeline_picks_its_dtype_by_the_cpu(auto_dtype, tiny_pipeline_dir):
    auto_dtype.setattr(runtime, "cpu_flags", lambda: AMX_FLAGS)
    pipe = load_pipeline(tiny_pipeline_dir, device="cpu")
    assert pipe.unet.dtype == torch.bfloat16 and pipe.lfae.dtype == torch.bfloat16
    assert load_pipeline(tiny_pipeline_dir, device="cpu", dtype=torch.float32).unet.dtype == torch.float32
    assert load_pipeline(tiny_pipeline_dir, device="cpu", dtype="float32").lfae.dtype == torch.float32
    auto_dtype.setattr(runtime, "cpu_flags", frozenset)
    assert load_pipeline(tiny_pipeline_dir, device="cpu").unet.dtype == torch.float32


# --- quality of bfloat16 ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_bfloat16():
    return load_pipeline(CHECKPOINTS, device="cpu", dtype=torch.bfloat16)


def test_shipped_model_in_bfloat16_gives_finite_outputs_that_start_on_the_input(shipped_bfloat16):
    pipe = shipped_bfloat16
    assert pipe.unet.dtype == torch.bfloat16 and pipe.lfae.dtype == torch.bfloat16
    image = Image.open(EXAMPLES[0])
    out = pipe(
        image,
        ["happiness", "surprise"],
        num_inference_steps=4,
        generator=torch.Generator().manual_seed(0),
        return_step_trace=True,
    )
    for name in ("frames", "warped", "flows", "occlusions", "trace_flows", "trace_occlusions"):
        array = getattr(out, name)
        assert array.dtype == np.float32, f"{name} comes back in float32"
        assert np.isfinite(array).all(), f"{name} holds NaN or Inf in bfloat16"
    reference = preprocess_image(image, pipe.image_size)
    frame0 = torch.from_numpy(out.frames[:, 0]).permute(0, 3, 1, 2)
    first = psnr(frame0, reference.expand(2, -1, -1, -1))
    assert first.min() >= 30, f"frame 0 must still be the input face in bfloat16: {first.tolist()} dB"


def test_full_size_unet_in_bfloat16_stays_close_to_float32():
    from lfdm.inference_cost import FULL_SIZE_CONFIG, full_size_models

    lfae, unet = full_size_models(FULL_SIZE_CONFIG, seed=0)
    del lfae
    generator = torch.Generator().manual_seed(0)
    frames, size = 4, unet.config.sample_size
    sample = torch.randn(1, 3, frames, size, size, generator=generator)
    features = torch.randn(1, unet.config.feature_channels, size, size, generator=generator)
    labels = torch.randn(1, unet.config.label_dim, generator=generator)
    timestep = torch.tensor([500])
    with torch.inference_mode():
        exact = unet(sample, timestep, features, labels).sample
        unet.to(torch.bfloat16)
        rounded = unet(sample.bfloat16(), timestep, features.bfloat16(), labels.bfloat16()).sample.float()
    assert torch.isfinite(rounded).all()
    relative = (rounded - exact).norm() / exact.norm()
    assert relative < 0.05, f"bfloat16 U-Net output is {relative:.3f} of the float32 norm away"
    cosine = F.cosine_similarity(rounded.flatten(), exact.flatten(), dim=0)
    assert cosine > 0.998, f"bfloat16 U-Net output points elsewhere (cosine {cosine:.4f})"


def test_app_says_which_precision_runs(tiny_pipeline_dir, tmp_path, auto_dtype):
    from lfdm.app import GenerationService

    service = GenerationService({"tiny": str(tiny_pipeline_dir)}, work_dir=tmp_path, device="cpu", dtype="bfloat16")
    assert service.pipeline().unet.dtype == torch.bfloat16
    assert "Runs on the CPU in **bfloat16**" in service.describe()
    auto_dtype.setattr(runtime, "cpu_flags", lambda: AMX_FLAGS)
    automatic = GenerationService({"tiny": str(tiny_pipeline_dir)}, work_dir=tmp_path / "auto", device="cpu")
    assert "in **bfloat16** (this CPU has AMX-BF16" in automatic.describe()


def test_driving_video_animates_a_bfloat16_pipeline(tiny_pipeline_dir):
    pipe = load_pipeline(tiny_pipeline_dir, device="cpu", dtype="bfloat16")
    generator = torch.Generator().manual_seed(0)
    driving = torch.rand(5, 3, pipe.image_size, pipe.image_size, generator=generator)
    out = pipe.animate(
        torch.rand(3, pipe.image_size, pipe.image_size, generator=generator), driving, driving_face="none"
    )
    assert out.frames.shape[:2] == (1, 5) and out.frames.dtype == np.float32
    assert np.isfinite(out.frames).all() and np.isfinite(out.flows).all()
