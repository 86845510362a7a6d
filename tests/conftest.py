"""Shared fixtures: a tiny random pipeline (32 px, 8x8 latents, 4 frames, labels smile/frown/surprise, DDIM).

`tiny_pipeline` is built once per session; tests that change it (scheduler, device, interrupt flag) build their
own with `lfdm.testing.make_tiny_pipeline()` (milliseconds). `tiny_pipeline_dir` is the same pipeline written by
`save_pretrained`, for loading, the CLI and the app.

`LFDM_TEST_DEVICE=cuda python -m pytest tests/test_lfae_parity.py tests/test_dm_parity.py` runs the parity checks
on a GPU (`parity_device`), with TF32 off: the fixtures are float32 numbers, and torch's default TF32 convolutions
move the outputs by up to a few 1e-3 (`LFDM_TEST_ALLOW_TF32=1` keeps them, to measure that). Everything else runs
where it always does.

The session has its own Gradio temporary folder (GRADIO_TEMP_DIR, deleted at the end) and every launched app a free
port, so a `python app.py` running beside the tests keeps its files (tests/test_app_process.py shows it).
"""

from __future__ import annotations

import os
import shutil
import tempfile

# The session's own Gradio folder, before anything imports Gradio: the apps the tests launch keep their uploads and
# outputs there and delete them on close, so nothing a running `python app.py` serves from its folder is touched.
GRADIO_TEMP_DIR = tempfile.mkdtemp(prefix="lfdm-tests-gradio-")
os.environ["GRADIO_TEMP_DIR"] = GRADIO_TEMP_DIR

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lfdm.testing import make_test_image, make_tiny_pipeline  # noqa: E402

# Tests run tiny models on a machine whose cores are shared: one thread per process avoids the heavy
# oversubscription that makes each small convolution dozens of times slower.
torch.set_num_threads(1)
# dtype="auto" picks bfloat16 on CPUs with AMX-BF16; the suite pins float32 so that its figures do not depend on the
# kind of machine. tests/test_precision.py runs bfloat16 explicitly and checks the automatic choice with mocked CPUs.
os.environ.setdefault("LFDM_DTYPE", "float32")


@pytest.fixture(scope="session")
def parity_device() -> torch.device:
    """Where the official-parity tests run their networks: $LFDM_TEST_DEVICE, default the CPU."""
    device = torch.device(os.environ.get("LFDM_TEST_DEVICE", "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.fail("LFDM_TEST_DEVICE asks for CUDA but torch sees no GPU")
    if device.type == "cuda" and os.environ.get("LFDM_TEST_ALLOW_TF32") != "1":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return device


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


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(GRADIO_TEMP_DIR, ignore_errors=True)  # the session's own folder, nothing else
