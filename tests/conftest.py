"""Shared fixtures: a tiny random pipeline (32 px, 8x8 latents, 4 frames, labels smile/frown/surprise, DDIM).

`tiny_pipeline` is built once per session; tests that change it (scheduler, device, interrupt flag) build their
own with `lfdm.testing.make_tiny_pipeline()` (milliseconds). `tiny_pipeline_dir` is the same pipeline written by
`save_pretrained`, for loading, the CLI and the app.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfdm.testing import make_test_image, make_tiny_pipeline

# Tests run tiny models on a machine whose cores are shared: one thread per process avoids the heavy
# oversubscription that makes each small convolution dozens of times slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_pipeline():
    return make_tiny_pipeline()


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_pipeline")
    make_tiny_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_image() -> np.ndarray:
    """uint8 (48, 48, 3) test picture."""
    return make_test_image(48)
