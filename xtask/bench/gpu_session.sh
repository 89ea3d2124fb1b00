#!/usr/bin/env bash
# One prepared GPU session for crosskd: the ops' GPU agreement tests and the train-step benchmark
# on CUDA, from binaries built elsewhere, on a machine that has the NVIDIA driver, CUDA 13.0 and a
# CUDA build of PyTorch but no Rust toolchain. Everything it prints and writes lands in "$OUT".
#
# Build the two binaries on a machine with Rust and the CUDA toolkit (nvcc 13.0: `.ci/cuda-check`
# shows how to get it from PyPI, with CUDA_COMPUTE_CAP=90 for an H100/H200). Linking needs the
# driver library libcuda.so (cudarc links -lcuda -lnvrtc -lcurand -lcublas -lcublasLt, and
# candle-kernels -lcudart), so the link step must run where a driver or the toolkit's stub
# libcuda.so is installed; a machine with neither can only `cargo check --features cuda`.
#
#   export CARGO_TARGET_DIR=target/cuda   # keeps the CPU build's artefacts apart
#   cargo test --no-run --features cuda -p crosskd-ops --test gpu
#       -> prints "Executable tests/gpu.rs (target/cuda/debug/deps/gpu-<hash>)"
#   cargo build --release -p xtask --features cuda
#       -> target/cuda/release/xtask
#
# Copy them into the working tree under .gpu-bin/ (ignored: `echo /.gpu-bin/ >>.git/info/exclude`)
# as .gpu-bin/ops-gpu-tests and .gpu-bin/xtask, carry .gpu-bin, and run from the repository root:
#
#   bash xtask/bench/gpu_session.sh
#
# The binaries load CUDA's libraries at run time. The driver's libcuda.so.1 is on the system
# path; cuBLAS, cuRAND, NVRTC and the runtime come from the Python image's NVIDIA wheels, whose
# `nvidia/*/lib` folders this script puts on LD_LIBRARY_PATH (found through python3's
# site-packages, e.g. /opt/torch/.venv/lib/python3.12/site-packages/nvidia/cublas/lib).
#
# Outputs in "$OUT": environment.txt (GPU, driver, libraries), ops-gpu-tests.log (the test run),
# bench-train-step-cuda.log (the benchmark; its last line is `ratio crosskd/pytorch (cuda): X`)
# and benchmarks.md (docs/benchmarks.md with the new `train-step-cuda` section; copy the section
# back into the repository). The exit status is non-zero if either step failed; both always run.
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT to the folder that receives the outputs}"
mkdir -p "$OUT"
bin="${CROSSKD_GPU_BIN:-.gpu-bin}"
status=0

# The NVIDIA wheels' library folders, from whichever python3 holds PyTorch.
python="${CROSSKD_PYTHON:-python3}"
site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)
if [[ -n "$site" && -d "$site/nvidia" ]]; then
  for lib in "$site"/nvidia/*/lib; do
    LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  done
  export LD_LIBRARY_PATH
fi
export CROSSKD_PYTHON="$python" CROSSKD_ROOT="$PWD" RUST_BACKTRACE=1

{
  echo "== nvidia-smi"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "nvidia-smi failed"
  echo "== python"
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' \
    || echo "no PyTorch in $python"
  echo "== LD_LIBRARY_PATH"
  echo "${LD_LIBRARY_PATH:-}" | tr ':' '\n'
  for exe in "$bin/ops-gpu-tests" "$bin/xtask"; do
    echo "== unresolved libraries of $exe"
    ldd "$exe" 2>&1 | grep "not found" || echo "(none)"
  done
} >"$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

# 1. The GPU agreement tests. One thread: every test opens its own CUDA context, and their
# failures read more easily one after another.
echo "== crosskd-ops GPU tests"
if ! "$bin/ops-gpu-tests" --ignored gpu --test-threads 1 2>&1 | tee "$OUT/ops-gpu-tests.log"; then
  status=1
fi

# 2. The train-step benchmark on the same GPU (it rewrites docs/benchmarks.md's
# train-step-cuda section only).
echo "== bench train-step --device cuda"
if ! "$bin/xtask" bench train-step --device cuda 2>&1 | tee "$OUT/bench-train-step-cuda.log"; then
  status=1
fi
cp docs/benchmarks.md "$OUT/benchmarks.md" 2>/dev/null || true
exit "$status"
