# Set-up shared by tools/device_train.sh and tools/device_ablation.sh (sourced, after each script has set its
# own MINUTES / WORKERS / RUNS defaults): the carried files, where outputs go, the source on PYTHONPATH, and a
# `say` that prefixes the seconds since the start.
set -euo pipefail
CARRY=$(realpath "${CARRY:-.dev/carry}")
OUTDIR=${OUTDIR:-/tmp/out}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-/tmp/fd_data}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
mkdir -p "$OUTDIR" "$RUNS"
t0=$(date +%s)
say() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
