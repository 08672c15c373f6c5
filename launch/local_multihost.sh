#!/usr/bin/env bash
# Runs N processes on this machine as one real multi-host JAX job (CPU devices).
#
#   launch/local_multihost.sh [--dry-run] N [wgan_jax.main args...]
#
# Each process gets DEVICES_PER_PROCESS simulated CPU devices (default 2), connects to a
# coordinator on 127.0.0.1:PORT (default: a free port) and runs python -m wgan_jax.main with
# the given arguments. PYTHON picks the interpreter (default python3). Process 0 prints to
# the terminal; process i > 0 logs to $LOG_DIR/process_i.log (default: a temporary folder).
# The exit status is the first non-zero one among the processes; SIGTERM or SIGINT to one
# process stops them all at the same step (each saves it, status 143 / 130). --dry-run prints the
# commands instead of running them; --help prints this text.
set -euo pipefail

# shellcheck source=/dev/null
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # show_help, quote
usage() { echo "usage: $0 [--dry-run] N [wgan_jax.main args...]" >&2; exit 2; }

[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && show_help
runner=()
if [[ "${1:-}" == "--dry-run" ]]; then runner=(quote); shift; fi
[[ $# -ge 1 && "$1" =~ ^[1-9][0-9]*$ ]] || usage
n="$1"; shift

python="${PYTHON:-python3}"
devices="${DEVICES_PER_PROCESS:-2}"
port="${PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
log_dir="${LOG_DIR:-$(mktemp -d)}"

# XLA:CPU ends a process whose device has waited 40 s at a collective (its default); processes
# sharing a few cores can fall that far behind each other without anything being wrong. A dead
# peer still ends the job at once (the CPU collectives fail when its connection closes).
timeouts="--xla_cpu_collective_call_warn_stuck_timeout_seconds=60"
timeouts+=" --xla_cpu_collective_call_terminate_timeout_seconds=120"

process() {  # process INDEX: one process of the job
  "${runner[@]}" env "XLA_FLAGS=--xla_force_host_platform_device_count=${devices} ${timeouts}" \
    JAX_PLATFORMS=cpu "$python" -m wgan_jax.main "--coordinator_address=127.0.0.1:${port}" \
    "--num_processes=${n}" "--process_id=$1" "${args[@]}"
}

args=("$@")
if (( ${#runner[@]} )); then
  for ((i = 0; i < n; i++)); do process "$i"; done
  exit 0
fi
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup INT TERM
process 0 &
pids+=("$!")
for ((i = 1; i < n; i++)); do
  process "$i" >"${log_dir}/process_${i}.log" 2>&1 &
  pids+=("$!")
done

# The first process to fail ends the job: the others would wait for it in a collective.
# A preempted one (130 / 143: SIGINT / SIGTERM) does not: every process saves the same step
# and stops with it, so the others are left to finish.
status=0
for ((i = 0; i < ${#pids[@]}; i++)); do
  code=0
  wait -n || code=$?  # the processes are this shell's only background jobs
  if (( code == 130 || code == 143 )); then
    (( status != 0 )) || status=$code
  elif (( code != 0 )); then
    status=$code
    echo "a process failed with status ${code} (logs: ${log_dir})" >&2
    cleanup
    break
  fi
done
exit "$status"
