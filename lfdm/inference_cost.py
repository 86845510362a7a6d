"""Speed and memory of LFDM inference: the paper's full-size networks with random weights, and a trained pipeline.

    python -m lfdm bench --what all --repeats 5 --json speed.json

Every figure is the median over `repeats` calls after one warm-up call, in `torch.inference_mode`. Peak memory is
the peak resident set of the process during one measurement on a CPU (Linux `VmHWM`, reset before each
measurement; elsewhere the lifetime peak), and `torch.cuda.max_memory_allocated` on a GPU.

Shapes at the paper's size (`lfdm/configs/mug128.yaml`): 128 px frames, 40 frames, latents (1, 3, 40, 32, 32),
image features (1, 256, 32, 32), label embeddings (1, 768).
"""

from __future__ import annotations

import logging
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import yaml

from lfdm.latents import identity_grid
from lfdm.models.labels import LabelEncoder
from lfdm.models.lfae import LatentFlowAutoencoder
from lfdm.models.unet3d import FlowUNet3D
from lfdm.pipeline import LFDMPipeline
from lfdm.runtime import cpu_flags, cpu_has_amx_bf16
from lfdm.schedulers import DEFAULT_STEPS, make_scheduler, make_training_scheduler

logger = logging.getLogger(__name__)

FULL_SIZE_CONFIG = Path(__file__).parent / "configs" / "mug128.yaml"

# The authors' code on a 2-core CPU (AMD EPYC VM, torch 2.13 CPU, 2 threads, fp32, inference_mode): seconds.
OFFICIAL_CPU_SECONDS = {
    "unet_forward": 3.55,
    "ddpm_step": 3.52,
    "decode": 6.41,  # their per-frame loop over 40 frames
    "video_ddpm_1000": 3530.0,  # 1000 x 3.52 + 6.4, estimated the same way as ours
}
# What this code aims at on a 2-core CPU, seconds.
CPU_TARGETS = {"unet_forward": 1.5, "decode": 3.0, "video_dpmsolver": 45.0}


@dataclass
class Measurement:
    """One benchmark figure: `median_s` over `runs` timed calls (seconds), their min and max, and the peak memory
    during them (bytes; None where it cannot be measured). `estimated`: derived from other figures, not timed."""

    name: str
    shapes: str
    median_s: float
    min_s: float
    max_s: float
    runs: int
    peak_memory_bytes: int | None = None
    estimated: bool = False
    note: str = ""
    dtype: str = "float32"  # the networks' precision

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BenchSettings:
    """device: "cpu" | "cuda"; dtype: torch dtype of the networks; threads: torch CPU threads (None: leave)."""

    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    threads: int | None = 2
    repeats: int = 5
    video_repeats: int = 3
    num_frames: int = 40
    decode_chunk_size: int | None = None
    seed: int = 0
    extra: dict = field(default_factory=dict)


# --- measuring ---------------------------------------------------------------------------------------------------


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak_memory(device: str) -> None:
    """Start a new peak-memory window (CUDA statistics, or the Linux VmHWM of this process)."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def peak_memory(device: str) -> int | None:
    """Peak bytes since `reset_peak_memory`: allocated CUDA memory, or the resident set of this process."""
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if platform.system() == "Darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def measure(name: str, shapes: str, call: Callable[[], object], *, repeats: int, device: str, note: str = ""):
    """Time `call` `repeats` times after one untimed warm-up call -> `Measurement`."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1; got {repeats}.")
    call()
    _synchronize(device)
    reset_peak_memory(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        _synchronize(device)
        seconds.append(time.perf_counter() - start)
    logger.info("%s: median %.3f s over %d runs", name, statistics.median(seconds), repeats)
    return Measurement(
        name=name,
        shapes=shapes,
        median_s=statistics.median(seconds),
        min_s=min(seconds),
        max_s=max(seconds),
        runs=repeats,
        peak_memory_bytes=peak_memory(device),
        note=note,
    )


# --- models ------------------------------------------------------------------------------------------------------


def full_size_models(
    config: str | os.PathLike = FULL_SIZE_CONFIG, *, seed: int = 0
) -> tuple[LatentFlowAutoencoder, FlowUNet3D]:
    """The LFAE and U-Net of a config file's `lfae` and `unet` sections with seeded random weights, in eval mode."""
    sections = yaml.safe_load(Path(config).read_text())
    missing = [name for name in ("lfae", "unet") if name not in sections]
    if missing:
        raise ValueError(f"{config} has no {missing} section(s); pass a model config such as {FULL_SIZE_CONFIG}.")
    unet_config = dict(sections["unet"])
    unet_config["dim_mults"] = tuple(unet_config["dim_mults"])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        lfae = LatentFlowAutoencoder(**sections["lfae"]).eval()
        unet = FlowUNet3D(**unet_config).eval()
    return lfae, unet


def random_pipeline(lfae: LatentFlowAutoencoder, unet: FlowUNet3D, scheduler: str = "dpmsolver") -> LFDMPipeline:
    """A pipeline of the given networks with a random learned label table (the labels do not matter for speed)."""
    labels = LabelEncoder(labels=["action"], embedding_dim=unet.config.label_dim, learned=True)
    pipe = LFDMPipeline(lfae=lfae, unet=unet, scheduler=make_scheduler(scheduler), label_encoder=labels.eval())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def bench_image(size: int, seed: int = 0) -> np.ndarray:
    """A smooth random uint8 picture (size, size, 3)."""
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 255, (2, 2, 3))
    ys, xs = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    top = corners[0, 0] * (1 - xs[..., None]) + corners[0, 1] * xs[..., None]
    bottom = corners[1, 0] * (1 - xs[..., None]) + corners[1, 1] * xs[..., None]
    return np.round(top * (1 - ys[..., None]) + bottom * ys[..., None]).astype(np.uint8)


# --- the figures -------------------------------------------------------------------------------------------------


def _unet_inputs(unet: FlowUNet3D, lfae: LatentFlowAutoencoder, settings: BenchSettings):
    generator = torch.Generator().manual_seed(settings.seed)
    size, frames = lfae.latent_size, settings.num_frames
    sample = torch.randn(1, unet.config.sample_channels, frames, size, size, generator=generator)
    features = torch.randn(1, unet.config.feature_channels, size, size, generator=generator)
    label = torch.randn(1, unet.config.label_dim, generator=generator)
    to = dict(device=settings.device, dtype=settings.dtype)
    return sample.to(**to), features.to(**to), label.to(**to)


def bench_unet(unet: FlowUNet3D, lfae: LatentFlowAutoencoder, settings: BenchSettings) -> list[Measurement]:
    """The U-Net forward, and one DDPM sampling step (forward + dynamic thresholding + posterior draw)."""
    sample, features, label = _unet_inputs(unet, lfae, settings)
    timestep = torch.tensor([500], device=settings.device)
    shapes = f"z_t {tuple(sample.shape)}, z_0 {tuple(features.shape)}, label {tuple(label.shape)}"
    forward = measure(
        "unet_forward",
        f"{shapes} -> {tuple(sample.shape)}",
        lambda: unet(sample, timestep, features, label),
        repeats=settings.repeats,
        device=settings.device,
    )
    scheduler = make_training_scheduler()
    scheduler.set_timesteps(1000, device=settings.device)
    generator = torch.Generator(device=settings.device).manual_seed(settings.seed)

    def ddpm_step():
        noise = unet(sample, timestep, features, label).sample
        return scheduler.step(noise.float(), 500, sample.float(), generator=generator).prev_sample

    step = measure("ddpm_step", shapes, ddpm_step, repeats=settings.repeats, device=settings.device)
    return [forward, step]


def bench_decode(lfae: LatentFlowAutoencoder, settings: BenchSettings) -> Measurement:
    """Decoding `num_frames` frames of one reference (its encoder pyramid computed once, as the pipeline does)."""
    generator = torch.Generator().manual_seed(settings.seed)
    frames, size = settings.num_frames, lfae.latent_size
    to = dict(device=settings.device, dtype=settings.dtype)
    reference = torch.rand(1, 3, lfae.config.image_size, lfae.config.image_size, generator=generator).to(**to)
    flows = identity_grid(size, size).expand(frames, size, size, 2) + 0.05 * torch.randn(frames, size, size, 2)
    occlusions = torch.rand(frames, 1, size, size, generator=generator)
    # float32 whatever the networks' dtype, as the pipeline passes them
    flows, occlusions = flows.to(settings.device), occlusions.to(settings.device)
    chunk = settings.decode_chunk_size or frames
    pyramid = lfae.encode_pyramid(reference)

    def decode():
        for start in range(0, frames, chunk):
            end = start + chunk
            lfae.decode(reference, flows[start:end], occlusions[start:end], features=pyramid)

    shapes = f"reference {tuple(reference.shape)}, flows ({frames}, {size}, {size}, 2) -> ({frames}, 3, H, W)"
    note = f"{chunk} frames per decoder call"
    return measure("decode", shapes, decode, repeats=settings.repeats, device=settings.device, note=note)


def bench_video(pipe: LFDMPipeline, scheduler: str, steps: int, settings: BenchSettings, name: str) -> Measurement:
    """One video end to end: image preprocessing, encoding, `steps` sampling steps, decoding every frame."""
    pipe.scheduler = make_scheduler(scheduler, base_config=pipe.scheduler.config)
    image, label = bench_image(pipe.image_size, settings.seed), pipe.labels[0]
    num_frames = settings.num_frames

    def generate(num_inference_steps: int):
        generator = torch.Generator(device=settings.device).manual_seed(settings.seed)
        return pipe(
            image, label, num_inference_steps=num_inference_steps, generator=generator, num_frames=num_frames,
            decode_chunk_size=settings.decode_chunk_size, output_type="pt", face="none",
        )  # fmt: skip

    generate(1)  # warm-up: every layer once, without paying for a whole video
    shapes = f"{pipe.image_size} px image -> ({num_frames}, {pipe.image_size}, {pipe.image_size}, 3)"
    note = f"{scheduler}, {steps} steps"
    return measure(name, shapes, lambda: generate(steps), repeats=settings.video_repeats, device=settings.device,
                   note=note)  # fmt: skip


def extrapolate_ddpm_video(step: Measurement, decode: Measurement, steps: int = 1000) -> Measurement:
    """seconds per video with `steps` DDPM steps, from the measured per-step and decode medians (not timed)."""

    def total(step_seconds: float, decode_seconds: float) -> float:
        return steps * step_seconds + decode_seconds

    return Measurement(
        name=f"video_ddpm_{steps}",
        shapes="as video_dpmsolver",
        median_s=total(step.median_s, decode.median_s),
        min_s=total(step.min_s, decode.min_s),
        max_s=total(step.max_s, decode.max_s),
        runs=0,
        estimated=True,
        note=f"{steps} x ddpm_step median + decode median (not run: {steps} steps)",
    )


def shipped_model_videos(
    model_dir: str | os.PathLike,
    settings: BenchSettings,
    schedulers: tuple[str, ...] | list[str] = tuple(DEFAULT_STEPS),
) -> list[Measurement]:
    """Seconds per video of a trained pipeline folder for each scheduler at its default number of steps."""
    from lfdm.pipeline import load_pipeline

    pipe = load_pipeline(model_dir, device=settings.device, dtype=settings.dtype)
    pipe.set_progress_bar_config(disable=True)
    shipped = replace(settings, num_frames=pipe.num_frames, video_repeats=1)
    return [
        bench_video(pipe, name, DEFAULT_STEPS[name], shipped, name=f"shipped_{name}_{DEFAULT_STEPS[name]}")
        for name in schedulers
    ]


PHOTO = Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut.png"


def photo_path_videos(
    model_dir: str | os.PathLike, settings: BenchSettings, *, steps: int | None = None, side: int = 512
) -> list[Measurement]:
    """What a real photo costs on top of the model-size path, with the pipeline folder `model_dir` (DPM-Solver++
    `steps` steps, None: the model's own default; one label, the app's astronaut portrait enlarged to `side` px):

    - photo_model_size_video: `face="none"`, `resolution=None`: the whole picture, a model-size video;
    - photo_<side>_video: `face="auto"`, `resolution="input"`: the face found and aligned, the video rendered at
      `side` px and pasted back into the photo;
    - photo_<side>_overhead: the photo path's own work timed alone: the face search and crop, then rendering the
      frames at `side` px (`lfdm.photo`), with the pipeline's refiner when it has one.
    """
    import cv2
    from PIL import Image

    from lfdm.photo import frame_photo, render_photo_video
    from lfdm.pipeline import load_pipeline

    pipe = load_pipeline(model_dir, device=settings.device, dtype=settings.dtype)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("dpmsolver", base_config=pipe.scheduler.config)
    photo = cv2.resize(np.asarray(Image.open(PHOTO).convert("RGB")), (side, side), interpolation=cv2.INTER_CUBIC)
    label, repeats = pipe.labels[0], settings.video_repeats
    steps = steps or pipe.default_num_inference_steps

    def video(**kwargs):
        generator = torch.Generator(device=settings.device).manual_seed(settings.seed)
        return pipe(photo, label, num_inference_steps=steps, generator=generator, output_type="pt", **kwargs)

    output = video(face="auto")

    def overhead():
        framing = frame_photo(photo, pipe.image_size, model_framing=pipe.framing, face="auto")
        frames = output.model_frames.permute(0, 1, 4, 2, 3)  # (B, F, S, S, 3) -> (B, F, 3, S, S)
        return render_photo_video(framing, output.flows, output.occlusions, frames, (side, side), refiner=pipe.refiner)

    shapes = f"{side} px photo + label -> (F, {side}, {side}, 3)"
    note = f"dpmsolver, {steps} steps"
    results = [
        measure("photo_model_size_video", f"{side} px photo + label -> (F, {pipe.image_size}, {pipe.image_size}, 3)",
                lambda: video(face="none"), repeats=repeats, device=settings.device, note=note),
        measure(f"photo_{side}_video", shapes, lambda: video(face="auto", resolution="input"), repeats=repeats,
                device=settings.device, note=note),
        measure(f"photo_{side}_overhead", shapes, overhead, repeats=settings.repeats, device=settings.device,
                note="face search + crop + rendering, no sampling"),
    ]  # fmt: skip
    # on a shared machine the wall time of a short call mostly measures the other jobs: say its CPU time too
    cpu_seconds = []
    for _ in range(settings.repeats):
        began = time.process_time()
        overhead()
        cpu_seconds.append(time.process_time() - began)
    results[-1].note += f"; process CPU time median {statistics.median(cpu_seconds):.3f} s"
    return results


def machine_info(device: str) -> dict:
    """CPU model, cores, AMX-BF16 or not, torch version, load average: what a reader needs to compare figures."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": model,
        "cpus": os.cpu_count(),
        # bfloat16 is 2-3x faster than float32 with AMX-BF16 and slower without: say which kind measured
        "amx_bf16": cpu_has_amx_bf16(),
        "bf16_flags": sorted(flag for flag in cpu_flags() if "bf16" in flag or flag.startswith("amx")),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info
