#!/usr/bin/env bash
# The GPU check: builds core/, its unit tests and the benchmark against a CUDA-enabled
# LibTorch (by default the one inside python3's PyTorch), then on the GPU runs the tests
# of the CUDA path, the inference benchmark, every unit test, and the self-supervised
# benchmark, and prints what it measured. The Orthanc plugin and the model tools are not
# built. Needs CMake, Ninja, a C++ compiler, DCMTK, JsonCpp and GoogleTest (give their
# prefixes in CMAKE_PREFIX_PATH when they are not in /usr).
#
#   scripts/cuda-check.sh [BUILD_DIR]          (default: build-cuda)
#
# Environment:
#   TORCH_CMAKE_PREFIX        LibTorch's CMake folder (default: python3's torch.utils.cmake_prefix_path)
#   ENHANCE_CUDA_LOGS         folder for each stage's whole log (default: BUILD_DIR/logs)
#   ENHANCE_CUDA_SECONDS      time for everything; each stage gets what is left (default 3600)
#   ENHANCE_CXX_STANDARD      C++ standard to build with (default 17)
#   ENHANCE_BENCHMARK_SLICES  slices per benchmark run (default 128)
# Exits non-zero when a stage fails. Never part of CI, which has no GPU.
# SPDX-License-Identifier: GPL-3.0-or-later
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(realpath -m "${1:-$root/build-cuda}")"
logs="$(realpath -m "${ENHANCE_CUDA_LOGS:-$build/logs}")"
deadline=$(($(date +%s) + ${ENHANCE_CUDA_SECONDS:-3600}))
slices="${ENHANCE_BENCHMARK_SLICES:-128}"
mkdir -p "$build" "$logs"
failed=()

# stage NAME CAP_SECONDS COMMAND...: runs COMMAND for at most CAP seconds (less when the
# overall time is nearly spent), its output in logs/NAME.log and its last lines here.
stage() {
  local name=$1 cap=$2
  shift 2
  local left=$((deadline - $(date +%s)))
  ((left < cap)) && cap=$left
  if ((cap <= 5)); then
    echo "== $name: not run, no time left"
    failed+=("$name (not run)")
    return 1
  fi
  local start rc
  start=$(date +%s)
  echo "== $name (at most ${cap} s): $*"
  timeout --kill-after=10 "$cap" "$@" >"$logs/$name.log" 2>&1
  rc=$?
  tail -n "${TAIL_LINES:-25}" "$logs/$name.log"
  echo "== $name: exit $rc after $(($(date +%s) - start)) s"
  echo
  ((rc == 0)) || failed+=("$name (exit $rc)")
  return $rc
}

echo "== machine"
nproc
grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
(nvcc --version 2>/dev/null | tail -n 2) || echo "no nvcc"
"${CXX:-c++}" --version | head -n 1
cmake --version | head -n 1
torch_prefix="${TORCH_CMAKE_PREFIX:-$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')}"
python3 -c 'import torch; print("PyTorch", torch.__version__, "CUDA", torch.version.cuda,
      "available", torch.cuda.is_available())' 2>&1 || true
echo

cuda_compiler=()
if command -v nvcc >/dev/null; then
  nvcc="$(realpath "$(command -v nvcc)")"
  cuda_compiler=(-DCMAKE_CUDA_COMPILER="$nvcc" -DCUDAToolkit_ROOT="$(dirname "$(dirname "$nvcc")")")
fi
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
TAIL_LINES=40 stage configure 300 cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_STANDARD="${ENHANCE_CXX_STANDARD:-17}" -DENHANCE_BUILD_PLUGIN=OFF \
  -DENHANCE_BUILD_MODEL_TOOLS=OFF -DENHANCE_FUZZ_SECONDS=0 -DCMAKE_POLICY_VERSION_MINIMUM=3.5 \
  -DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined \
  -DCMAKE_PREFIX_PATH="$torch_prefix${CMAKE_PREFIX_PATH:+;$CMAKE_PREFIX_PATH}" \
  "${cuda_compiler[@]}" || { echo "configure failed: ${failed[*]}"; exit 1; }

# PyTorch's wheels find CUDA's libraries through their own run paths when the programs run;
# the linker is not asked to find them too (--allow-shlib-undefined above).
# Keeps going past a failing file, so that one run lists every error.
TAIL_LINES=60 stage build 1800 cmake --build "$build" -- -k 0 enhance_core_tests \
  enhance-benchmark enhance-make-phantom enhance-fixture-model

bench="$build/tools/enhance-benchmark"
tests="$build/tests/unit/enhance_core_tests"
if [[ -x $tests ]]; then
  stage cuda-tests 300 "$tests" --gtest_filter='*Cuda*:*CUDA*:TorchModel.DeviceNames'
fi
if [[ -x $bench ]]; then
  TAIL_LINES=45 stage benchmark 600 "$bench" --models "$root/models" --device cuda \
    --slices "$slices" --repeats 3 --batches 1,8,32
fi
if [[ -x $tests ]]; then
  TAIL_LINES=40 stage unit-tests "${ENHANCE_UNIT_TEST_SECONDS:-1800}" ctest --test-dir "$build" -L unit --parallel "$(nproc)" \
    --timeout 600 --output-on-failure
fi
if [[ -x $bench ]]; then
  stage self-supervised 900 "$bench" --self-supervised --device cuda --time-budget 120
fi

if ((${#failed[@]})); then
  echo "failed: ${failed[*]}"
  exit 1
fi
echo "every stage passed"
