"""The model card a train-dm export carries (`README.md` of its pipeline folder): what the app shows beside the model
(`lfdm.app.models.read_model_card`), so that a model trained on your own clips says what it learned and from what."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lfdm.data.factory import DataConfig
from lfdm.framing import ModelFraming


def model_card(
    *,
    labels: Sequence[str],
    image_size: int,
    num_frames: int,
    framing: ModelFraming,
    data: DataConfig,
    init_from: str | None,
    known_labels: Sequence[str] = (),
    default_steps: int | None = None,
) -> str:
    """Markdown: the model's actions (those new since `init_from`'s pipeline marked), its pictures, its data."""
    actions = ", ".join(f"{label} (new)" if known_labels and label not in known_labels else label for label in labels)
    pictures = "faces, aligned by their eyes" if framing.is_face else "whole pictures, resized and padded"
    source = "SynthFace, rendered on the fly" if data.dataset == "synthface" else f"`{data.dataset}` videos"
    if data.root and data.dataset != "synthface":
        source += f" under `{data.root}`"
    lines = [
        "A latent flow diffusion model (LFDM) trained with `python -m lfdm train-dm`.",
        "",
        f"- Actions: {actions}",
        f"- Pictures: {image_size}x{image_size} px, {num_frames} frames; {pictures}",
        f"- Trained on: {source}",
    ]
    if init_from:
        lines.append(f"- Started from: `{init_from}` (the labels it knew kept their rows)")
    if default_steps is not None:
        lines.append(
            f"- Sampling: {default_steps} steps by default, as `{init_from}` measured for itself; "
            "`python -m lfdm evaluate --model <this folder> --choose-default --write-default` measures this model's own"
        )
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | Path, card: str) -> Path:
    """Write `card` as the pipeline folder's README.md."""
    path = Path(folder) / "README.md"
    path.write_text(card, encoding="utf-8")
    return path
