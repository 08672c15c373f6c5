#!/usr/bin/env bash
# Trains on a Cloud TPU VM or pod slice: create it, copy the code, install, run, delete.
#
#   launch/tpu_pod.sh [options] --zone=ZONE --accelerator-type=TYPE --workdir=gs://... \
#       --config=FILE[:ARG] [-- wgan_jax.main args...]
#
# Steps, each a gcloud command (--dry-run prints them instead of running them):
#   1. create the TPU VM (gcloud compute tpus tpu-vm create), or with --queued a queued
#      resource (gcloud compute tpus queued-resources create --node-id=NAME), then wait
#      until it is ACTIVE; --spot for Spot capacity;
#   2. copy the code to every worker: the local checkout (the files git tracks plus untracked
#      ones it does not ignore) as one tarball with `tpu-vm scp --worker=all`, or with
#      --repo=URL a `git clone` on every worker;
#      with --data=gs://..., the prepared tfds datasets are then copied onto every worker's
#      disk (gcloud storage rsync) and passed as --config.data.data_dir: the data source reads
#      single examples at random, fast from local disk, one request each from gs://;
#   3. install on --worker=all: a Python 3.11 virtual environment ~/wgan_venv (the code is
#      in ~/wgan_jax) with requirements.txt, jax[tpu]==0.10.2 (libtpu) and etils[epath-gcs]
#      (gcsfs, which orbax and etils.epath need for gs:// paths);
#   4. run `python -m wgan_jax.main --config=... --workdir=gs://...` on --worker=all (the same
#      command on every host; jax.distributed initialises itself on a TPU pod), streaming
#      the output; --config.parallel.strategy=jit unless the arguments set a strategy;
#      a Spot preemption or maintenance event reaches the hosts as SIGTERM: they agree on
#      one step, save it and exit 143 (rerun the script with the same --workdir to resume);
#   5. delete the TPU VM / queued resource on exit, also after a failure or Ctrl-C, unless
#      --keep.
#
# Options (each also an environment variable, shown in brackets):
#   --name=NAME               TPU VM name [TPU_NAME] (default wgan-jax-$USER)
#   --zone=ZONE               e.g. us-central2-b (v4), us-west4-a (v5e) [ZONE] (required)
#   --accelerator-type=TYPE   e.g. v4-32, v4-256, v5litepod-16 [ACCELERATOR_TYPE] (required)
#   --runtime-version=VER     TPU software version [RUNTIME_VERSION] (default
#                             tpu-ubuntu2204-base; v2-alpha-tpuv5-lite for v5e)
#   --project=PROJECT         [PROJECT] (default: gcloud's configured project)
#   --spot                    Spot TPU [SPOT=1]
#   --queued                  create through a queued resource [QUEUED=1]
#   --workdir=gs://B/PATH     run directory shared by all workers [WORKDIR] (required)
#   --config=FILE[:ARG]       config, e.g. configs/sngan.py:cnn [CONFIG] (required)
#   --data=gs://B/tfds        tfds data_dir to copy to the workers (image datasets) [DATA]
#   --repo=URL                git clone URL instead of copying this checkout [REPO]
#   --ref=REF                 branch or tag to clone with --repo [REF]
#   --keep                    keep the TPU VM at the end [KEEP=1]
#   --dry-run                 print the commands instead of running them
# POLL_SECONDS (default 60) is how often a queued resource's state is checked.
# WORKER_PYTHON (default python3.11) is the interpreter the workers' virtual environment is
# made from; it is installed with apt when missing (Ubuntu 22.04 images ship Python 3.10).
set -euo pipefail

usage() {
  echo "usage: $0 [--dry-run] [--name=NAME] --zone=ZONE --accelerator-type=TYPE" \
    "[--runtime-version=VER] [--project=P] [--spot] [--queued] --workdir=gs://BUCKET/PATH" \
    "--config=FILE[:ARG] [--data=gs://...] [--repo=URL [--ref=REF]] [--keep]" \
    "[-- wgan_jax.main args...]" >&2
  exit 2
}
# shellcheck source=/dev/null
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # show_help, quote, sets_strategy

dry_run=0
name="${TPU_NAME:-wgan-jax-${USER:-user}}"
zone="${ZONE:-}"
accelerator_type="${ACCELERATOR_TYPE:-}"
runtime_version="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"
project="${PROJECT:-}"
spot="${SPOT:-0}"
queued="${QUEUED:-0}"
workdir="${WORKDIR:-}"
config="${CONFIG:-}"
repo="${REPO:-}"
data="${DATA:-}"
ref="${REF:-}"
keep="${KEEP:-0}"
worker_python="${WORKER_PYTHON:-python3.11}"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    -h|--help) show_help ;;
    --name=?*) name="${1#*=}" ;;
    --zone=?*) zone="${1#*=}" ;;
    --accelerator-type=?*) accelerator_type="${1#*=}" ;;
    --runtime-version=?*) runtime_version="${1#*=}" ;;
    --project=?*) project="${1#*=}" ;;
    --spot) spot=1 ;;
    --queued) queued=1 ;;
    --workdir=?*) workdir="${1#*=}" ;;
    --config=?*) config="${1#*=}" ;;
    --repo=?*) repo="${1#*=}" ;;
    --data=?*) data="${1#*=}" ;;
    --ref=?*) ref="${1#*=}" ;;
    --keep) keep=1 ;;
    --) shift; break ;;
    *) echo "$0: unknown option '$1' (wgan_jax.main arguments go after --)" >&2; usage ;;
  esac
  shift
done
main_args=("$@")

[[ -n "$zone" ]] || { echo "$0: --zone is required" >&2; usage; }
[[ -n "$accelerator_type" ]] || { echo "$0: --accelerator-type is required" >&2; usage; }
[[ -n "$config" ]] || { echo "$0: --config is required" >&2; usage; }
[[ "$workdir" == gs://?* ]] || {
  echo "$0: --workdir must be a gs:// path that every worker can reach" >&2; usage; }
[[ "$name" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || {
  echo "$0: --name must be lower-case letters, digits and dashes" >&2; usage; }
[[ -z "$data" || "$data" == gs://?* ]] || { echo "$0: --data must be a gs:// path" >&2; usage; }
[[ -z "$ref" || -n "$repo" ]] || { echo "$0: --ref needs --repo" >&2; usage; }

run() {  # run CMD...: runs it, or prints it with --dry-run
  if (( dry_run )); then quote "$@"; else "$@"; fi
}

gcloud_flags=("--zone=${zone}")
[[ -z "$project" ]] || gcloud_flags+=("--project=${project}")
qr_id="${name}-qr"
remote_dir=wgan_jax  # relative to the workers' home directory
venv=wgan_venv
ssh_all() {  # ssh_all COMMAND: runs the shell command on every worker
  run gcloud compute tpus tpu-vm ssh "$name" "${gcloud_flags[@]}" --worker=all --command="$1"
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if (( keep )); then
    echo "# kept: delete later with" >&2
    if (( queued )); then
      quote gcloud compute tpus queued-resources delete "$qr_id" "${gcloud_flags[@]}" --force >&2
    else
      quote gcloud compute tpus tpu-vm delete "$name" "${gcloud_flags[@]}" >&2
    fi
  elif (( queued )); then
    run gcloud compute tpus queued-resources delete "$qr_id" "${gcloud_flags[@]}" --force \
      --quiet || echo "$0: could not delete queued resource ${qr_id}; delete it by hand" >&2
  else
    run gcloud compute tpus tpu-vm delete "$name" "${gcloud_flags[@]}" --quiet \
      || echo "$0: could not delete TPU VM ${name}; delete it by hand" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. Create.
spot_flag=()
(( spot )) && spot_flag=(--spot)
if (( queued )); then
  run gcloud compute tpus queued-resources create "$qr_id" --node-id="$name" "${gcloud_flags[@]}" \
    --accelerator-type="$accelerator_type" --runtime-version="$runtime_version" "${spot_flag[@]}"
  describe=(gcloud compute tpus queued-resources describe "$qr_id" "${gcloud_flags[@]}"
            "--format=value(state.state)")
  if (( dry_run )); then
    echo "# repeated until ACTIVE:"; quote "${describe[@]}"
  else
    while true; do
      state="$("${describe[@]}" 2>/dev/null)" || state=""
      case "$state" in
        ACTIVE) break ;;
        FAILED|SUSPENDING|SUSPENDED)
          echo "$0: queued resource ${qr_id} is ${state}" >&2; exit 1 ;;
      esac
      echo "queued resource ${qr_id}: ${state:-unknown}; waiting" >&2
      sleep "${POLL_SECONDS:-60}"
    done
  fi
else
  run gcloud compute tpus tpu-vm create "$name" "${gcloud_flags[@]}" \
    --accelerator-type="$accelerator_type" --version="$runtime_version" "${spot_flag[@]}"
fi

# 2. Code.
if [[ -n "$repo" ]]; then
  clone=(git clone --depth=1)
  [[ -z "$ref" ]] || clone+=("--branch=${ref}")
  ssh_all "rm -rf ${remote_dir} && $(quote "${clone[@]}" "$repo") ${remote_dir}"
else
  root="$(cd "$(dirname "$0")/.." && pwd)"
  tarball="${TMPDIR:-/tmp}/wgan_jax_${name}.tar.gz"
  if (( dry_run )); then
    echo "# pack the checkout (git ls-files --cached --others --exclude-standard):"
    quote tar -czf "$tarball" -C "$root" '<files>'
  elif git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$root" ls-files -z --cached --others --exclude-standard \
      | while IFS= read -r -d '' f; do [[ ! -e "${root}/${f}" ]] || printf '%s\0' "$f"; done \
      | tar -czf "$tarball" -C "$root" --null -T -
  else
    tar -czf "$tarball" -C "$root" --exclude=.git --exclude=.venv --exclude=runs \
      --exclude=__pycache__ .
  fi
  run gcloud compute tpus tpu-vm scp "$tarball" "${name}:wgan_jax.tar.gz" "${gcloud_flags[@]}" \
    --worker=all
  (( dry_run )) || rm -f "$tarball"
  unpack="tar -xzf wgan_jax.tar.gz -C ${remote_dir}"
  ssh_all "rm -rf ${remote_dir} && mkdir -p ${remote_dir} && ${unpack}"
fi

data_flag=""
if [[ -n "$data" ]]; then
  tfds_dir=tensorflow_datasets
  ssh_all "mkdir -p ${tfds_dir} && gcloud storage rsync --recursive $(quote "$data") ${tfds_dir}"
  data_flag=" --config.data.data_dir=\$HOME/${tfds_dir}"  # expanded on the worker
fi

# 3. Install.
libtpu_links=https://storage.googleapis.com/jax-releases/libtpu_releases.html
venv_create="${worker_python} -m venv --clear ${venv}"
apt="sudo apt-get -o DPkg::Lock::Timeout=600"  # waits for the image's own apt runs at boot
install="set -e; ${venv_create} 2>/dev/null || { ${apt} update -q &&"
install+=" ${apt} install -y -q ${worker_python} ${worker_python}-venv && ${venv_create}; };"
install+=" ${venv}/bin/pip install -q --upgrade pip && ${venv}/bin/pip install -q"
install+=" -r ${remote_dir}/requirements.txt 'jax[tpu]==0.10.2' 'etils[epath-gcs]'"
install+=" -f ${libtpu_links}"
ssh_all "$install"

# 4. Run.
strategy=(--config.parallel.strategy=jit)
! sets_strategy "${main_args[@]}" || strategy=()
train="cd ${remote_dir} && ../${venv}/bin/python -m wgan_jax.main"
train+=" $(quote "--config=${config}" "--workdir=${workdir}" "${strategy[@]}")${data_flag}"
(( ${#main_args[@]} == 0 )) || train+=" $(quote "${main_args[@]}")"
ssh_all "$train"
# 5. Delete: the EXIT trap, which exits with the run's status.
