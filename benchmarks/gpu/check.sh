#!/usr/bin/env bash
# The prepared GPU check: one command on the bare GPU machine, under 8 minutes, everything into OUT_DIR.
#
#     bash benchmarks/gpu/check.sh OUT_DIR              # on the GPU machine, from the repository root
#     bash benchmarks/gpu/check.sh OUT_DIR --dry-run    # on any CPU, < 1 min: tiny sizes, CUDA-only parts skipped
#
# Steps (each under its own `timeout`; a failed step is recorded and the next one still runs):
#   1 install     the wheels of benchmarks/gpu/wheels (fetch_wheels.sh) with pip --no-index, then this package
#                 with --no-deps; OUT_DIR/installed.txt lists what was added (dry run: the current environment)
#   2 cuda-tests  pytest -m cuda (the CUDA correctness tests; dry run: they skip without CUDA)
#   3 throughput  benchmarks/gpu/throughput.py: training images/s (fp16/bf16 × channels_last × compile), the
#                 SDM/DDPM step-time ratio, the bf16 matmul ceiling, sampling images/s -> throughput.json
#   4 train       python -m sdmlib.train on the offline photos with the paper UNet (fp16) -> OUT_DIR/run
#   5 project     benchmarks/gpu/project.py: the measured rates projected onto the paper's runs -> projection.json
# The table printed last (also OUT_DIR/summary.md) gives each step's status, seconds and key numbers; the exit
# status is 1 when any step failed or timed out.
# Step timeouts (seconds; 90 + 90 + 170 + 100 + 30 = 480 at most) can be changed with TIMEOUT_INSTALL,
# TIMEOUT_TESTS, TIMEOUT_THROUGHPUT and TIMEOUT_TRAIN.
set -euo pipefail

usage="usage: bash benchmarks/gpu/check.sh OUT_DIR [--dry-run]"
OUT="${1:?$usage}"
DRY=0
case "${2:-}" in
  "") ;;
  --dry-run) DRY=1 ;;
  *) echo "$usage (got ${2})" >&2; exit 2 ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
mkdir -p "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
STEPS="$OUT/steps.tsv"
printf 'step\tstatus\tseconds\tnote\n' > "$STEPS"
# The working tree's sdmlib wins over any installed copy: `python -m` from the root, and PYTHONPATH for pytest.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "$DRY" = 1 ]; then
  PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
else
  PYTHON="${PYTHON:-python3}"
fi
WHEELS="$ROOT/benchmarks/gpu/wheels"
TINY=()
[ "$DRY" = 1 ] && TINY=(--tiny)
export OUT PYTHON WHEELS DRY

# run_step NAME TIMEOUT_S NOTE COMMAND...: runs COMMAND under `timeout`, its output in logs/NAME.log (and on the
# terminal), and records ok / FAILED (rc N) / TIMEOUT in steps.tsv. Never stops the script.
run_step() {
  local name="$1" limit="$2" note="$3"
  shift 3
  echo "== $name (timeout ${limit}s): $*"
  local start rc status
  start=$(date +%s)
  rm -f "$OUT/logs/$name.note"
  # `bash -c` so that a step may be one of the exported functions below; a pipe (not >(tee)) so that the log is
  # complete when the step ends.
  set +e
  timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@" 2>&1 | tee "$OUT/logs/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  status=ok
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=TIMEOUT; elif [ "$rc" != 0 ]; then status="FAILED (rc $rc)"; fi
  [ -f "$OUT/logs/$name.note" ] && note="$(cat "$OUT/logs/$name.note")"  # a step may say more than its default
  record "$name" "$status" "$(( $(date +%s) - start ))" "$note"
  return 0
}
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$STEPS"; }

# -- 1. install -------------------------------------------------------------------------------------------------
"$PYTHON" -m pip list --format=freeze > "$OUT/pip-before.txt" 2>/dev/null || true
install_packages() {
  if [ ! -d "$WHEELS" ]; then
    echo "no $WHEELS: run benchmarks/gpu/fetch_wheels.sh on a machine with the registry and carry the folder"
    return 1
  fi
  local rc=0
  # Unpinned names: pip keeps every installed package whose version satisfies the requirement.
  local top=(diffusers torch-fidelity papermill ipykernel brevitas submitit pyyaml tqdm psutil)
  if ! "$PYTHON" -m pip install --no-index --find-links "$WHEELS" "${top[@]}"; then
    echo "installing them together failed; one at a time, so that the others still land:"
    for package in "${top[@]}"; do
      "$PYTHON" -m pip install --no-index --find-links "$WHEELS" "$package" || { echo "FAILED: $package"; rc=1; }
    done
  fi
  "$PYTHON" -m pip install --no-deps --no-build-isolation -e . \
    || "$PYTHON" -m pip install --no-deps "$WHEELS"/sdmlib-*.whl \
    || echo "sdmlib not installed: PYTHONPATH=$ROOT serves it from the working tree"
  return $rc
}
export -f install_packages
if [ "$DRY" = 1 ]; then
  record install skipped 0 "dry run: the current environment ($PYTHON)"
else
  run_step install "${TIMEOUT_INSTALL:-90}" "from benchmarks/gpu/wheels" install_packages
fi
"$PYTHON" -m pip list --format=freeze > "$OUT/pip-after.txt" 2>/dev/null || true
{ comm -13 <(sort "$OUT/pip-before.txt") <(sort "$OUT/pip-after.txt") || true; } > "$OUT/installed.txt"
echo "installed: $(wc -l < "$OUT/installed.txt") packages (list: $OUT/installed.txt)"
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" \
  > "$OUT/torch.txt" 2>&1 || true

# -- 2. CUDA correctness ----------------------------------------------------------------------------------------
# Exit status 5 is pytest's "no tests collected": no test carries the marker yet, which is not a failure here.
cuda_tests() {
  # Only the files that use the marker: collecting the whole suite would import what the GPU machine lacks (jupytext,
  # ...) and fail on collection errors of tests that are not selected anyway.
  local paths rc=0
  mapfile -t paths < <(grep -l "mark.cuda" tests/test_*.py 2>/dev/null)
  if [ "${#paths[@]}" = 0 ]; then
    echo "pytest -m cuda: no test file uses the marker yet (not a failure)" | tee "$OUT/logs/cuda-tests.note"
    return 0
  fi
  echo "files using the marker: ${paths[*]}"
  "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider -rs --junitxml "$OUT/pytest-cuda.xml" "${paths[@]}" || rc=$?
  if [ "$rc" = 5 ]; then
    echo "pytest -m cuda: no test carries the marker (not a failure)" | tee "$OUT/logs/cuda-tests.note"
    return 0
  fi
  [ "$DRY" = 1 ] && echo "dry run: without CUDA these tests skip" > "$OUT/logs/cuda-tests.note"
  return "$rc"
}
export -f cuda_tests
run_step cuda-tests "${TIMEOUT_TESTS:-90}" "pytest -m cuda" cuda_tests

# -- 3. throughput ------------------------------------------------------------------------------------------------
run_step throughput "${TIMEOUT_THROUGHPUT:-170}" "throughput.json" \
  "$PYTHON" benchmarks/gpu/throughput.py --out "$OUT/throughput.json" "${TINY[@]}"

# -- 4. one end-to-end run ----------------------------------------------------------------------------------------
# The speed options of TrainConfig, passed only where this version of it has them (they arrive with issue 11).
speed_options() {
  "$PYTHON" - <<'PY'
import dataclasses
from sdmlib.config import TrainConfig
fields = {f.name for f in dataclasses.fields(TrainConfig)}
wanted = {"channels_last": "auto", "tf32": "true", "data_on_device": "auto"}  # auto: on for CUDA
print(" ".join(f"-p {name} {value}" for name, value in wanted.items() if name in fields))
PY
}
SPEED="$(speed_options 2>/dev/null || true)"
echo "speed options passed to the run: ${SPEED:-none (this TrainConfig has none of them)}"
if [ "$DRY" = 1 ]; then
  RUN_ARGS=(-p model_size tiny -p train_steps 4 -p batch_size 8 -p lr_warmup_steps 1 -p checkpoint_every 2
            -p mixed_precision auto -p num_eval_samples 16 -p eval_batch_size 16 -p num_inference_steps 2
            -p num_grid_samples 4 -p pca_components 8)
else
  RUN_ARGS=(-p model_size paper -p train_steps 300 -p batch_size 128 -p learning_rate 0.0002 -p lr_warmup_steps 50
            -p ema_decay 0.999 -p checkpoint_every 100 -p mixed_precision fp16 -p num_workers 4
            -p num_eval_samples 2000 -p eval_batch_size 1000 -p num_inference_steps 50 -p pca_components 32)
fi
# shellcheck disable=SC2086  # SPEED is a list of words by construction
run_step train "${TIMEOUT_TRAIN:-100}" "run/ (${SPEED:-no speed options})" \
  "$PYTHON" -m sdmlib.train -f params/quick.yaml "${RUN_ARGS[@]}" -p metrics '[pca_fd]' -p s0 -0.3 \
  -p output_dir "$OUT/run" $SPEED --no-progress

# -- 5. projection onto the paper's runs --------------------------------------------------------------------------
run_step project 30 "projection.json" \
  "$PYTHON" benchmarks/gpu/project.py "$OUT/throughput.json" --out "$OUT/projection.json"

echo
"$PYTHON" benchmarks/gpu/summary.py "$OUT" | tee "$OUT/summary.md"
# Exit status 1 when a step failed or timed out (after the table: every step has run and said what it found).
! grep -qP '\t(FAILED|TIMEOUT)' "$STEPS"
