"""Which models the app offers: every pipeline folder under `checkpoints/`, and what to do when there is none."""

from __future__ import annotations

import re
from pathlib import Path

NO_MODEL_MESSAGE = """\
**No model yet.** `checkpoints/` holds no pipeline folder (a folder with a `model_index.json`). Get one of these
ways, then restart the app (it lists every pipeline folder under `checkpoints/`):

- convert the authors' released MUG checkpoints (`python -m lfdm convert --help` has the details):
  `python -m lfdm embed-labels --labels mug --out mug_labels.safetensors`, then
  `python -m lfdm convert --preset mug --lfae RegionMM_*.pth --dm flowdiff_*.pth
  --label-embeddings mug_labels.safetensors --out checkpoints/lfdm-mug128`
- train your own on SynthFace: `python -m lfdm make-dataset --help`, `python -m lfdm train-lfae --help`,
  `python -m lfdm train-dm --help`
- or start the app on a pipeline folder or a Hugging Face repo: `python app.py --model DIR_OR_REPO`
"""

_MAX_DEPTH = 3  # checkpoints/<data set>/<run>/ is as deep as people nest them
_MAX_CARD_CHARS = 1200


def find_pipelines(root: str | Path) -> dict[str, str]:
    """Every pipeline folder (one holding `model_index.json`) in `root` and up to three levels below it.

    Returns shown name -> folder path, sorted; the name is the folder's path from the parent of `root`
    (`checkpoints`, `checkpoints/mug128`).
    """
    root = Path(root)
    if not root.is_dir():
        return {}
    found = {}
    for index in sorted(root.glob("model_index.json")) + sorted(
        path for depth in range(1, _MAX_DEPTH + 1) for path in root.glob("/".join(["*"] * depth) + "/model_index.json")
    ):
        folder = index.parent
        found[folder.relative_to(root.parent).as_posix()] = str(folder)
    return found


def read_model_card(path: str | Path) -> str:
    """The text of a pipeline folder's README.md without its YAML front matter, shortened; "" if there is none."""
    card = Path(path) / "README.md"
    if not card.is_file():
        return ""
    text = re.sub(r"\A---\n.*?\n---\n", "", card.read_text(encoding="utf-8", errors="replace"), flags=re.DOTALL)
    text = text.strip()
    if len(text) > _MAX_CARD_CHARS:
        text = text[:_MAX_CARD_CHARS].rsplit("\n", 1)[0] + "\n\n..."
    return text
