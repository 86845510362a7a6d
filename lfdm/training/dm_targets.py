"""What the diffusion model learns from: the frozen LFAE's flows, occlusion maps and image features of each clip.

Paper (Ni et al., CVPR 2023, sec. 3.2): with the LFAE frozen, every training video x_0..x_K gives the latent
sequence z = [f_1..f_K, m_1..m_K] relative to its first frame, and the condition Phi(x_0). Here:

- `compute_targets(lfae, video)`: clips (B, 3, F, H, W) -> `Targets(features (B, C, h, w), latents (B, 3, F, h, w))`,
  every frame relative to frame 0 (frame 0 itself gives about the identity grid and full visibility), all B*F
  flows in ONE batched LFAE call.
- `TargetCache`: for a fixed data set (real videos), the targets of `draws` passes over it are computed once and
  stored as safetensors shards under `<cache_dir>/<key>/`, the key hashing the LFAE weights and everything that
  decides the clips (data config, stream seed, draws). Training then reads the cache instead of decoding videos
  and running the LFAE every step. SynthFace renders new clips all the time, so its targets are computed on the fly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange, repeat
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset, Subset

from lfdm.data.factory import DataConfig
from lfdm.latents import flows_to_latents
from lfdm.models.lfae import LatentFlowAutoencoder
from lfdm.training.logs import progress_bar
from lfdm.training.stream import SampleStream

logger = logging.getLogger(__name__)

SHARD_SIZE = 64  # clips per cache file
MANIFEST_FILE = "manifest.json"


@dataclass
class Targets:
    """features (B, C, h, w): Phi(x_0) of each clip's frame 0; latents (B, 3, F, h, w): [flow_x, flow_y, 2m-1]."""

    features: torch.Tensor
    latents: torch.Tensor


def load_frozen_lfae(path: str | Path) -> LatentFlowAutoencoder:
    """A trained LFAE in eval mode with gradients off.

    `path`: a `save_pretrained` folder, a stage-one run folder (its `model/`), or a pipeline folder (its `lfae/`).
    """
    path = Path(path)
    for folder in (path, path / "model", path / "lfae"):
        if (folder / "config.json").is_file():
            lfae = LatentFlowAutoencoder.from_pretrained(folder)
            logger.info("loaded the autoencoder from %s", folder)
            return lfae.eval().requires_grad_(False)
    raise FileNotFoundError(
        f"no trained autoencoder at {str(path)!r}: pass the `model/` folder of a train-lfae run (or the run folder, "
        "or a pipeline folder with an `lfae/` sub-folder)."
    )


@torch.no_grad()
def compute_targets(lfae: LatentFlowAutoencoder, video: torch.Tensor) -> Targets:
    """video (B, 3, F, H, W) in [0, 1] -> `Targets` relative to frame 0, in the LFAE's dtype and device."""
    b, _, f, _, _ = video.shape
    reference = video[:, :, 0]
    features = lfae.encode(reference)
    # every frame against its clip's frame 0, all in one call: (b, c, f, H, W) -> (b f, c, H, W), b outer
    frames = rearrange(video, "b c f h w -> (b f) c h w")
    references = repeat(reference, "b c h w -> (b f) c h w", f=f)
    estimate = lfae.estimate_flow(references, frames)
    flows = rearrange(estimate.flow, "(b f) h w xy -> b f h w xy", b=b)
    occlusions = rearrange(estimate.occlusion, "(b f) 1 h w -> b f h w", b=b)
    return Targets(features=features, latents=flows_to_latents(flows, occlusions))


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of a model's state dict (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def cache_key(lfae_fingerprint: str, data: DataConfig, *, num_clips: int, seed: int, draws: int) -> str:
    """The cache folder name: changes with the LFAE weights, the data config, the number of clips, the stream
    seed or the draws."""
    settings = {key: value for key, value in dataclasses.asdict(data).items() if key != "num_workers"}
    identity = {"lfae": lfae_fingerprint, "data": settings, "clips": num_clips, "seed": seed, "draws": draws}
    text = json.dumps(identity, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class TargetCache(Dataset):
    """Cached targets as a data set; item i = the targets of item i of `SampleStream(clips, seed)`.

    Items: `{"features": (C, h, w), "latents": (3, F, h, w), "label": str, "label_index": int}` (float32).
    Build with `TargetCache.build`; open an existing cache with `TargetCache(folder)`.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        manifest = self.folder / MANIFEST_FILE
        if not manifest.is_file():
            raise FileNotFoundError(f"{self.folder} is not a complete target cache (no {MANIFEST_FILE}).")
        info = json.loads(manifest.read_text())
        self.size, self.shard_size, self.labels = info["size"], info["shard_size"], info["labels"]
        self._handles: dict[int, object] = {}  # opened lazily, so each DataLoader worker opens its own

    def __len__(self) -> int:
        return self.size

    def _shard(self, shard: int):
        if shard not in self._handles:
            self._handles[shard] = safe_open(str(self.folder / _shard_name(shard)), framework="pt")
        return self._handles[shard]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a cache of {self.size} clips.")
        shard, position = divmod(index, self.shard_size)
        handle = self._shard(shard)
        label_index = int(handle.get_slice("label_index")[position : position + 1][0])
        return {
            "features": handle.get_slice("features")[position : position + 1][0],
            "latents": handle.get_slice("latents")[position : position + 1][0],
            "label": self.labels[label_index],
            "label_index": label_index,
        }

    @classmethod
    def build(
        cls,
        root: str | Path,
        lfae: LatentFlowAutoencoder,
        clips: Dataset,
        data: DataConfig,
        *,
        labels: list[str],
        seed: int,
        draws: int,
        batch_size: int,
        accelerator,
    ) -> TargetCache:
        """Open the cache for (LFAE, data, seed, draws) under `root`, computing the missing shards first.

        Each process computes every num_processes-th shard; shards are written whole (temporary name, then
        renamed), so an interrupted build resumes where it stopped.
        """
        folder = Path(root) / cache_key(weights_fingerprint(lfae), data, num_clips=len(clips), seed=seed, draws=draws)
        if (folder / MANIFEST_FILE).is_file():
            logger.info("using the target cache %s", folder)
            return cls(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stream = SampleStream(clips, seed)
        size = draws * len(clips)
        shards = range(accelerator.process_index, -(-size // SHARD_SIZE), accelerator.num_processes)
        todo = [shard for shard in shards if not (folder / _shard_name(shard)).is_file()]
        logger.info("caching the targets of %d clips in %s (%d shards to compute)", size, folder, len(todo))
        progress = progress_bar(len(todo), 0, enabled=accelerator.is_main_process)
        for shard in todo:
            indices = range(shard * SHARD_SIZE, min(size, (shard + 1) * SHARD_SIZE))
            _write_shard(folder, shard, lfae, Subset(stream, list(indices)), labels, batch_size, data.num_workers)
            progress.update(1)
        progress.close()
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            info = {"size": size, "shard_size": SHARD_SIZE, "labels": list(labels), "draws": draws, "seed": seed}
            (folder / MANIFEST_FILE).write_text(json.dumps(info, indent=1))
        accelerator.wait_for_everyone()
        return cls(folder)


def _shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.safetensors"


def _write_shard(folder: Path, shard: int, lfae, clips: Dataset, labels, batch_size: int, num_workers: int) -> None:
    device = next(lfae.parameters()).device
    features, latents, label_indices = [], [], []
    for batch in DataLoader(clips, batch_size=batch_size, num_workers=num_workers):
        targets = compute_targets(lfae, batch["video"].to(device))
        features.append(targets.features.float().cpu())
        latents.append(targets.latents.float().cpu())
        label_indices += [labels.index(label) for label in batch["label"]]
    tensors = {
        "features": torch.cat(features).contiguous(),
        "latents": torch.cat(latents).contiguous(),
        "label_index": torch.tensor(label_indices, dtype=torch.int64),
    }
    partial = folder / (_shard_name(shard) + ".partial")
    save_file(tensors, str(partial))
    partial.rename(folder / _shard_name(shard))
