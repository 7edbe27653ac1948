#!/usr/bin/env bash
# Download, on a machine with the package registry, the wheels the bare GPU machine lacks, for Python 3.12 on
# manylinux x86-64, into benchmarks/gpu/wheels/ (git-ignored; carried along with the working tree to the GPU).
#
#     bash benchmarks/gpu/fetch_wheels.sh                      # what the GPU machine lacks
#     TORCH_VERSION=2.9.1 bash benchmarks/gpu/fetch_wheels.sh  # also the torchvision built for that torch
#
# The GPU machine has torch, accelerate, safetensors, seaborn, scipy, pandas, scikit-image, tensorboard and pytest,
# and lacks diffusers, torch-fidelity, papermill and brevitas. We resolve the closure of the missing packages with
# pip's dry run (it reads metadata only, so torch's 900 MB wheel is never fetched) and download it without
# dependencies, leaving out what the machine already has: torch and its CUDA wheels, and the large scientific
# packages above. check.sh installs with `pip install --no-index`, which keeps an installed package whenever its
# version satisfies the requirement, so a wheel here is only used where the machine lacks that package.
# torchvision is pinned to one torch release (torchvision 0.x requires torch == 2.y exactly), so it is fetched only
# when TORCH_VERSION names the GPU machine's torch (check.sh prints it: `torch.__version__`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${DEST:-$ROOT/benchmarks/gpu/wheels}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
# pip's --python-version sets the wheel tags but not the environment markers (papermill needs aiohttp only on
# Python >= 3.12): resolve with a Python 3.12 interpreter when this machine has one.
RESOLVER="${RESOLVER:-}"
for candidate in python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12; do
  [ -n "$RESOLVER" ] && break
  if "$candidate" -m pip --version > /dev/null 2>&1; then RESOLVER="$candidate"; fi
done
if [ -z "$RESOLVER" ]; then
  RESOLVER="$PYTHON"
  echo "warning: no python3.12 here; markers are evaluated for $("$PYTHON" -V): a 3.12-only dependency may be missed"
fi
# The packages sdmlib needs (pyproject.toml) that the GPU machine lacks, plus the small ones it may lack.
MISSING=(diffusers torch-fidelity papermill ipykernel brevitas submitit pyyaml tqdm psutil)
# Present there, large, and loosely required by what we install: never downloaded. Everything small is, even what
# the machine has (safetensors, accelerate, pillow): diffusers may need a newer release than the machine's, and pip
# --no-index keeps the installed one whenever it satisfies the requirement.
PRESENT_RE='^(torch|triton|nvidia-.*|cuda-.*|numpy|scipy|pandas|scikit-image|matplotlib|contourpy|fonttools|kiwisolver|tensorboard|tensorboard-data-server|grpcio|pyarrow|sympy|networkx)$'
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64
        --platform any)
rm -rf "$DEST" && mkdir -p "$DEST"  # no stale wheels from an earlier resolution
REPORT="$(mktemp)"
trap 'rm -f "$REPORT"' EXIT
REQUIREMENTS=("${MISSING[@]}")
if [ -n "${TORCH_VERSION:-}" ]; then
  REQUIREMENTS+=(torchvision "torch==$TORCH_VERSION")
else
  # torch-fidelity pulls some torchvision in, built for some other torch: useless there, so left out.
  PRESENT_RE="${PRESENT_RE%)\$}|torchvision)\$"
fi

echo "resolving ${REQUIREMENTS[*]} for cp312 manylinux x86-64 with $("$RESOLVER" -V) ($RESOLVER)"
# PIP_CONSTRAINT / config files of this machine may cap versions to its own disk; the GPU wants the registry's.
PIP_CONFIG_FILE=/dev/null PIP_CONSTRAINT= "$RESOLVER" -m pip install --quiet --dry-run --ignore-installed \
  --target "$(mktemp -d)" "${TARGET[@]}" --report "$REPORT" "${REQUIREMENTS[@]}"

mapfile -t PINS < <("$PYTHON" - "$REPORT" "$PRESENT_RE" <<'PY'
import json, re, sys
report, present = json.load(open(sys.argv[1])), re.compile(sys.argv[2])
for item in report["install"]:
    name = item["metadata"]["name"].lower().replace("_", "-")
    if not present.match(name):
        print(f"{name}=={item['metadata']['version']}")
PY
)
echo "downloading ${#PINS[@]} wheels into $DEST"
PIP_CONFIG_FILE=/dev/null PIP_CONSTRAINT= "$PYTHON" -m pip download --quiet --no-deps "${TARGET[@]}" -d "$DEST" \
  "${PINS[@]}"

# This repository's own wheel: check.sh installs it with --no-deps (an editable install needs no wheel, but the
# wheel lets a copy without write access install too).
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$DEST" "$ROOT"
printf '%s\n' "${PINS[@]}" > "$DEST/requirements.txt"
du -sh "$DEST"
ls -S "$DEST" | head -5 | sed 's/^/  largest: /'
