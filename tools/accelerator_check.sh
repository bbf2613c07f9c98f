#!/usr/bin/env bash
# The accelerator check (BUILD.md, "Checking a GPU"): correctness against the CPU, speed, and a short
# training run end to end, reported as $OUT/accelerator_check.{json,md,log}.
#
#   tools/accelerator_check.sh [--dry-run] [--only PART ...] [--budget SECONDS]
#   tools/accelerator_check.sh --fetch-wheels      # here, with network: the wheels the GPU machine lacks
#
# Run from anywhere; it runs the project from this working tree. Without an accelerator (or with --dry-run)
# every part runs at tiny sizes. Wheels in $WHEELS (default wheels/, git-ignored) are installed into a
# temporary directory first, so a machine without network gets what it lacks. $PYTHON (default python3)
# runs everything; $OUT (default out/accelerator_check) receives the report.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-wheels}

# Imported by the check and missing from the GPU machine's image (KINDS.md of the device notes): the
# training run's TensorBoard writer. Pure Python; its own needs (numpy, packaging, protobuf) are there.
FETCH=(tensorboardX==2.6.5)

if [ "${1:-}" = "--fetch-wheels" ]; then
  exec "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" "${FETCH[@]}"
fi

OUT=${OUT:-out/accelerator_check}
mkdir -p "$OUT"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  SITE=$(mktemp -d)
  trap 'rm -rf "$SITE"' EXIT
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl \
    || { echo "error: could not install the wheels in $WHEELS" >&2; exit 1; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PYTHON" tools/accelerator_check.py --out "$OUT" "$@"
