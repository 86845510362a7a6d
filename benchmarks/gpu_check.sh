#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one run of about seven minutes:
#   1. the official-parity tests with the networks on the GPU, in float32 (TF32 off, as the tests set it) and with
#      torch's default TF32 convolutions (the largest deviations printed);
#   2. the test suite (the app's tests aside) where device "auto" and Accelerate pick the GPU;
#   3. `python -m lfdm bench` on the GPU: the paper's full-size networks (fp32 and bf16) and our shipped model;
#   4. training throughput of both stages on the GPU (bf16 mixed precision, SynthFace drawn on the fly).
# Expected in (2): the tests that demand a bit-identical resumed run fail on a GPU (CUDA's grid_sample backward is
# not deterministic), and every mp4 test fails where imageio-ffmpeg is missing. Last results: benchmarks/RESULTS.md.
# Usage, from the repository root: bash benchmarks/gpu_check.sh [OUT_DIR]   (log and bench JSONs go to OUT_DIR)
# SECTIONS="parity train" bash benchmarks/gpu_check.sh runs some of them (parity bench train tests; default all).
set -uo pipefail
out=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
sections=${SECTIONS:-parity bench train tests}
want() { [[ " $sections " == *" $1 "* ]]; }
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

{
  step machine
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$python" -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__,
      torch.cuda.get_device_name(), 'cudnn.allow_tf32', torch.backends.cudnn.allow_tf32,
      'matmul.allow_tf32', torch.backends.cuda.matmul.allow_tf32)"
  git log -1 --format='commit %h %s' 2>/dev/null

  if want parity; then
    step "parity on the GPU, float32"
    LFDM_TEST_DEVICE=cuda timeout 120 "$python" -m pytest -q -p no:cacheprovider \
      tests/test_lfae_parity.py tests/test_dm_parity.py 2>&1 | tail -25
    step "parity on the GPU, TF32 convolutions (torch's default)"
    LFDM_TEST_ALLOW_TF32=1 LFDM_TEST_DEVICE=cuda timeout 120 "$python" -m pytest -q -p no:cacheprovider --tb=short \
      tests/test_lfae_parity.py tests/test_dm_parity.py 2>&1 | grep -E "Greatest absolute|max abs diff [0-9]|passed|failed"
  fi

  if want bench; then
    step "bench: full-size networks, fp32"
    timeout 150 "$python" -m lfdm bench --what unet decode video --device cuda --repeats 10 \
      --json "$out/bench_cuda_fp32.json"
    step "bench: full-size networks, bf16"
    timeout 90 "$python" -m lfdm bench --what unet decode video --device cuda --dtype bfloat16 --repeats 10 \
      --json "$out/bench_cuda_bf16.json"
    step "bench: the shipped model"
    timeout 120 "$python" -m lfdm bench --what shipped --model checkpoints --device cuda \
      --json "$out/bench_cuda_shipped.json"
  fi

  if want train; then
    step "training throughput: LFAE, 60 steps"
    timeout 100 "$python" -m lfdm train-lfae --config lfdm/configs/synthface64.yaml --output-dir /tmp/gpu_lfae \
      --max-steps 60 2>&1 | grep -E "step (10|30|60)/|Error|error" | tail -5
    step "training throughput: DM, 60 steps"
    timeout 100 "$python" -m lfdm train-dm --config lfdm/configs/synthface64.yaml --lfae checkpoints/lfae \
      --output-dir /tmp/gpu_dm --max-steps 60 2>&1 | grep -E "step (10|30|60)/|Error|error" | tail -5
  fi

  if want tests; then
    step "test suite (app tests aside) with the GPU visible"
    timeout 200 "$python" -m pytest -q -p no:cacheprovider -n 8 --ignore=tests/test_app.py \
      --ignore=tests/test_app_browser.py 2>&1 | tail -40
  fi
  step done
} 2>&1 | tee "$out/gpu_check.log"
