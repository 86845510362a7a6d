"""Process-wide CPU settings that make lfdm's inference faster, and the choice of precision (`resolve_dtype`).

`keep_freed_memory()`: the full-size U-Net allocates tensors of up to 126 MB (the 32x32 attention projections)
dozens of times per forward. glibc serves every block above 32 MB with a fresh `mmap` and returns it on free, so
each allocation is paid again in page faults (about 20 ms per 126 MB here, 7 GB/s of first-touch zeroing). Raising
the mmap and trim thresholds keeps freed blocks in the heap for reuse: a full-size U-Net forward gets ~14 % faster
on one thread. The process then keeps its peak memory mapped instead of returning it to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os

import torch

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc malloc.h)
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap
_TRIM_THRESHOLD = 1 << 31  # return heap memory to the system only when 2 GiB are free at its top


def keep_freed_memory() -> bool:
    """Let glibc keep freed large blocks for reuse (see the module docstring). False where it does not apply
    (another C library, e.g. macOS or musl), True when set."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        logger.debug("no glibc mallopt here (%s); allocator left as it is", name)
        return False
    done = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    logger.debug("glibc mmap/trim thresholds raised: %s", done)
    return done


def available_cpus() -> int:
    """CPUs this process may run on (containers often report the host's count through `os.cpu_count`)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --- precision -------------------------------------------------------------------------------------------------------

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)  # for command-line flags


@functools.cache  # the CPU does not change under a running process
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them in /proc/cpuinfo (`avx512_bf16`, `amx_bf16`, ...); empty
    elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_amx_bf16() -> bool:
    """True on CPUs with AMX bfloat16 tiles (Intel Sapphire Rapids and later), where bfloat16 convolutions and
    matrix products run 2-3x faster than float32. Without AMX, torch's bfloat16 CPU kernels are slower than
    float32 (benchmarks/RESULTS.md)."""
    return "amx_bf16" in cpu_flags()


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device) -> torch.dtype:
    """The networks' precision for `device`: an explicit dtype (or its name) as given; "auto" / None picks
    bfloat16 on a CPU with AMX-BF16 and float32 on every other CPU and on CUDA (at batch 1 a GPU waits on kernel
    launches, and float32 measured as fast as bfloat16 there: benchmarks/RESULTS.md). The environment variable
    `LFDM_DTYPE` (a dtype name) replaces that rule where set."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        chosen = os.environ.get("LFDM_DTYPE", "auto")  # a machine-wide choice for "auto" (a Space, the tests)
        if chosen != "auto":
            return resolve_dtype(chosen, device)
        device = torch.device(device)
        return torch.bfloat16 if device.type == "cpu" and cpu_has_amx_bf16() else torch.float32
    if dtype not in DTYPES:
        raise ValueError(
            f"unknown dtype {dtype!r} (argument or LFDM_DTYPE); use one of {', '.join(DTYPE_CHOICES)} or a torch.dtype."
        )
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    """torch.bfloat16 -> "bfloat16"."""
    return str(dtype).removeprefix("torch.")
