#!/usr/bin/env bash
# Trains on all the GPUs of this machine: one process, one jitted step over every device.
#
#   launch/gpu.sh [--dry-run] [--install] --config=FILE[:ARG] --workdir=DIR [wgan_jax.main args...]
#
# Runs `python -m wgan_jax.main` with the given arguments (run it from the repository root)
# and --config.parallel.strategy=jit unless the arguments set a strategy. CUDA_VISIBLE_DEVICES
# picks the GPUs (default: all). PYTHON picks the interpreter (default python3). The
# environment gets, unless already set:
#   XLA_FLAGS            += --xla_gpu_enable_latency_hiding_scheduler=true (overlaps the
#                           gradient all-reduce with compute)
#   NCCL_DEBUG           = WARN
#   XLA_PYTHON_CLIENT_MEM_FRACTION is left at jax's default (75% of each GPU preallocated).
# --install first runs `pip install jax[cuda12]==0.10.2` (JAX_CUDA_EXTRA=cuda13 for CUDA 13)
# into PYTHON's environment; by default nothing is installed. --dry-run prints the commands
# instead of running them.
set -euo pipefail

usage() {
  echo "usage: $0 [--dry-run] [--install] --config=FILE[:ARG] --workdir=DIR" \
    "[wgan_jax.main args...]" >&2
  exit 2
}
# shellcheck source=/dev/null
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # show_help, quote, sets_strategy

dry_run=0
install=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --install) install=1 ;;
    -h|--help) show_help ;;
    --) shift; break ;;
    *) break ;;
  esac
  shift
done
[[ $# -ge 1 && "$1" == --* ]] || usage
args=("$@")

python="${PYTHON:-python3}"
extra="${JAX_CUDA_EXTRA:-cuda12}"
[[ "$extra" =~ ^cuda1[23](-local)?$ ]] || {
  echo "$0: JAX_CUDA_EXTRA must be cuda12, cuda13, cuda12-local or cuda13-local" >&2; usage; }

xla_flags="${XLA_FLAGS:-}"
if [[ "$xla_flags" != *xla_gpu_enable_latency_hiding_scheduler* ]]; then
  xla_flags="${xla_flags:+${xla_flags} }--xla_gpu_enable_latency_hiding_scheduler=true"
fi
strategy=(--config.parallel.strategy=jit)
! sets_strategy "${args[@]}" || strategy=()

run() {  # run CMD...: runs it, or prints it with --dry-run
  if (( dry_run )); then quote "$@"; else "$@"; fi
}

if (( install )); then
  run "$python" -m pip install "jax[${extra}]==0.10.2"
fi
run env "XLA_FLAGS=${xla_flags}" "NCCL_DEBUG=${NCCL_DEBUG:-WARN}" \
  "$python" -m wgan_jax.main "${args[@]}" "${strategy[@]}"
