"""`python -m lfdm bench`: speed and peak memory of the paper's full-size networks and of a trained pipeline.

    python -m lfdm bench                                   # everything, 2 CPU threads, fp32
    python -m lfdm bench --what unet decode --repeats 7 --json speed.json
    python -m lfdm bench --what video --steps 25 --device cuda
    python -m lfdm bench --what shipped --model checkpoints
    python -m lfdm bench --what photo --model checkpoints --video-repeats 5

Figures (medians over --repeats after a warm-up; random weights at the size of --config, mug128 by default):
- unet_forward: one U-Net forward of a (1, 3, 40, 32, 32) latent with (1, 256, 32, 32) image features;
- ddpm_step: one step of the paper's sampler (forward, dynamic thresholding, posterior draw);
- decode: the LFAE decoder on 40 flows of one reference (its encoder pyramid computed once);
- video_dpmsolver_<steps>: one whole video through `LFDMPipeline` with DPM-Solver++ (--video-repeats runs);
- video_ddpm_1000: the paper's 1000-step sampler, estimated as 1000 x ddpm_step + decode (not run);
- shipped_<scheduler>_<steps>: the pipeline folder --model, each scheduler at its default steps (skipped, with a
  message, when the folder does not exist).
- photo_model_size_video, photo_512_video, photo_512_overhead: --model on a 512 px portrait, the whole picture at
  the model's size against the face found, aligned and rendered at 512 px, and the photo path's own work alone
  (`lfdm.inference_cost.photo_path_videos`; --steps DPM-Solver++ steps, default the model's own).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

PARTS = ("unet", "decode", "video", "shipped", "photo")
SCHEDULERS = ("ddpm", "ddim", "dpmsolver", "unipc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--what", nargs="+", choices=(*PARTS, "all"), default=["all"], help="what to measure")
    parser.add_argument("--config", default=None, help="model config with lfae and unet sections (default: mug128)")
    parser.add_argument("--tiny", action="store_true", help="tiny random networks instead (a smoke test, seconds)")
    parser.add_argument("--model", default="checkpoints", help="trained pipeline folder for --what shipped")
    parser.add_argument(
        "--schedulers", nargs="+", choices=SCHEDULERS, default=list(SCHEDULERS), help="samplers for --what shipped"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure, after one warm-up run")
    parser.add_argument("--video-repeats", type=int, default=3, help="timed runs per whole video")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="DPM-Solver++ steps of the full-size video (default 25) and of the photo path (default: the model's)",
    )
    parser.add_argument("--frames", type=int, default=None, help="frames per video (default: the U-Net's config)")
    parser.add_argument("--decode-chunk-size", type=int, default=None, help="frames per decoder call (default all)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the networks run")
    parser.add_argument(
        "--dtype",
        nargs="+",
        default=["float32"],
        choices=("auto", "float32", "bfloat16"),
        help="network precision; several run one after another in the same process (auto: bfloat16 on a CPU with "
        "AMX-BF16, else float32)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    parser.add_argument(
        "--default-allocator", action="store_true", help="leave glibc's malloc untuned (see lfdm.runtime)"
    )
    parser.add_argument("--json", default=None, help="write every figure and the machine description to this file")


def run(args: argparse.Namespace) -> int:
    for name in ("repeats", "video_repeats", "steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1; got {getattr(args, name)}.")

    import torch

    from lfdm import inference_cost
    from lfdm.runtime import dtype_name, keep_freed_memory, resolve_dtype

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but torch sees no CUDA GPU; use --device cpu.")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    allocator = keep_freed_memory() if args.device == "cpu" and not args.default_allocator else False
    parts = set(PARTS) if "all" in args.what else set(args.what)
    inference_cost.reset_peak_memory(args.device)
    baseline_memory = inference_cost.peak_memory(args.device)  # the process before any network: interpreter, libraries
    lfae, unet = _networks(args, inference_cost)
    dtypes = list(dict.fromkeys(resolve_dtype(name, args.device) for name in args.dtype))
    machine = inference_cost.machine_info(args.device)
    machine["memory_before_networks_bytes"] = baseline_memory
    print(f"machine: {machine['cpu']}, {machine['cpus']} CPUs, AMX-BF16: {machine['amx_bf16']}, "
          f"torch {machine['torch']}, {machine['threads']} threads, load {machine['load_average']}, "
          f"glibc allocator tuned: {allocator}, memory before the networks {(baseline_memory or 0) / 2**20:.0f} MB; "
          f"networks in {', '.join(dtype_name(dtype) for dtype in dtypes)}")  # fmt: skip

    results = []
    for dtype in dtypes:
        settings = inference_cost.BenchSettings(
            device=args.device,
            dtype=dtype,
            threads=args.threads or None,
            repeats=args.repeats,
            video_repeats=args.video_repeats,
            num_frames=args.frames or unet.config.num_frames,
            decode_chunk_size=args.decode_chunk_size,
            seed=args.seed,
        )
        # a copy per dtype: the same random weights, rounded once to that precision
        networks = [copy.deepcopy(network).to(device=args.device, dtype=dtype) for network in (lfae, unet)]
        measured = _measure(args, parts, settings, *networks, inference_cost=inference_cost)
        for result in measured:
            result.dtype = dtype_name(dtype)
            if len(dtypes) > 1:
                result.name = f"{result.name} [{result.dtype}]"
        results += measured

    machine["load_average_after"] = inference_cost.machine_info(args.device)["load_average"]
    print(_table(results, compare=not args.tiny and args.device == "cpu", inference_cost=inference_cost))
    if args.json:
        record = {
            "command": "python -m lfdm " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "bench",
            "machine": machine,
            "settings": {key: str(value) for key, value in vars(args).items()},
            "allocator_tuned": allocator,
            "results": [result.to_dict() for result in results],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _measure(args, parts, settings, lfae, unet, *, inference_cost) -> list:
    """Every figure of `parts` for networks in one dtype."""
    import torch

    results = []
    with torch.inference_mode():
        if parts & {"unet", "video"}:
            results += inference_cost.bench_unet(unet, lfae, settings)
        if parts & {"decode", "video"}:
            results.append(inference_cost.bench_decode(lfae, settings))
        if "video" in parts:
            pipe = inference_cost.random_pipeline(lfae, unet).to(args.device)
            steps = args.steps or 25
            name = f"video_dpmsolver_{steps}"
            results.append(inference_cost.bench_video(pipe, "dpmsolver", steps, settings, name=name))
            by_name = {result.name: result for result in results}
            results.append(inference_cost.extrapolate_ddpm_video(by_name["ddpm_step"], by_name["decode"]))
        if "shipped" in parts:
            results += _shipped(args, settings, inference_cost)
        if "photo" in parts:
            results += _photo(args, settings, inference_cost)
    return results


def _networks(args, inference_cost):
    if not args.tiny:
        return inference_cost.full_size_models(args.config or inference_cost.FULL_SIZE_CONFIG, seed=args.seed)
    from lfdm.testing import make_tiny_lfae, make_tiny_unet

    lfae = make_tiny_lfae().eval()
    unet = make_tiny_unet(lfae.feature_channels, label_dim=16, num_frames=4, sample_size=lfae.latent_size)
    return lfae, unet.eval()


def _shipped(args, settings, inference_cost) -> list:
    if not (Path(args.model) / "model_index.json").is_file():
        print(f"shipped model: skipped, {args.model} is not a pipeline folder (no model_index.json); "
              "train one or pass --model DIR.")  # fmt: skip
        return []
    return inference_cost.shipped_model_videos(args.model, settings, schedulers=args.schedulers)


def _photo(args, settings, inference_cost) -> list:
    if not (Path(args.model) / "model_index.json").is_file():
        print(f"photo path: skipped, {args.model} is not a pipeline folder (no model_index.json).")
        return []
    return inference_cost.photo_path_videos(args.model, settings, steps=args.steps)


def _table(results, *, compare: bool, inference_cost) -> str:
    """A plain-text table; with `compare`, the authors' CPU figures, the speed-up over them and the targets."""
    rows = [("measurement", "median s", "min-max s", "runs", "peak MB", "official s", "speed-up", "target s", "met")]
    for result in results:
        name = result.name.split(" [")[0]  # without the dtype
        official = inference_cost.OFFICIAL_CPU_SECONDS.get(name) if compare else None
        if compare and name.startswith("video_ddpm_1000"):
            official = inference_cost.OFFICIAL_CPU_SECONDS["video_ddpm_1000"]
        target_key = "video_dpmsolver" if name.startswith("video_dpmsolver") else name
        target = inference_cost.CPU_TARGETS.get(target_key) if compare else None
        peak = f"{result.peak_memory_bytes / 2**20:.0f}" if result.peak_memory_bytes else "-"
        rows.append((
            result.name + (" (estimated)" if result.estimated else ""),
            f"{result.median_s:.3f}",
            f"{result.min_s:.3f}-{result.max_s:.3f}",
            str(result.runs),
            peak,
            f"{official:g}" if official else "-",
            f"{official / result.median_s:.2f}x" if official else "-",
            f"{target:g}" if target else "-",
            ("yes" if result.median_s <= target else "no") if target else "-",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
