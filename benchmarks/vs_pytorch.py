"""wgan_jax against the independent PyTorch references of benchmarks/torch_reference/,
interleaved.

  python -m benchmarks.vs_pytorch --torch_python=/tmp/venv_torch/bin/python \
      [--workloads=toy,cnn1,cnn5,resnet5] [--rounds=2]

For each workload the two sides run alternately, `--rounds` times each (on a shared 2-core
machine every figure moves with the load, so both sides are measured in the same window),
and one JSON line per workload gives both medians and the ratio jax / torch (> 1: wgan_jax
faster). PyTorch runs with channels_last, its fastest layout on this CPU. Setup of the
PyTorch side (its own virtual environment): benchmarks/torch_reference/README.md.
"""
import json
import os
import statistics
import subprocess
import sys

from absl import app, flags

_TORCH_PYTHON = flags.DEFINE_string(
    'torch_python', '/tmp/venv_torch/bin/python',
    'Interpreter with torch==2.13.0 (see benchmarks/torch_reference/README.md).')
# The PyTorch reference scripts.
TORCH_REFERENCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'torch_reference')
_WORKLOADS = flags.DEFINE_list('workloads', ['toy', 'cnn1', 'cnn5', 'resnet5'], 'What to run.')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Alternating runs per side.')

# name: (wgan_jax config + overrides, jax timed steps, torch script + args, torch rate key)
WORKLOADS = {
    'toy': (['--config=configs/wgan_gp.py:gaussians8'], 50,
            ['toy_wgan_gp.py', '--checkpoints', '300', '--speed_warmup', '20'],
            ('gen_iters_per_s',)),
    'cnn1': (['--config=configs/sngan.py:cnn', '--config.n_critic=1', '--synthetic_data'], 8,
             ['sngan_cifar_step.py', '--n_dis', '1', '--iters', '8', '--channels_last'],
             ('train', 'iters_per_s')),
    'cnn5': (['--config=configs/sngan.py:cnn', '--config.n_critic=5', '--synthetic_data'], 3,
             ['sngan_cifar_step.py', '--n_dis', '5', '--iters', '3', '--channels_last'],
             ('train', 'iters_per_s')),
    'resnet5': (['--config=configs/sngan.py', '--config.g_batch_size=64', '--synthetic_data'],
                1, ['resnet_cifar_step.py', '--variant', 'sngan', '--iters', '2',
                    '--channels_last'], ('train', 'iters_per_s')),
}


def _last_json(stdout: str) -> dict:
  return json.loads([line for line in stdout.splitlines() if line.startswith('{')][-1])


def run_jax(args, steps) -> dict:
  cmd = [sys.executable, '-m', 'benchmarks.train_step', f'--steps={steps}', '--repeats=3', *args]
  env = dict(os.environ, WGAN_JAX_COMPILATION_CACHE='')  # measure compilation too
  out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return _last_json(out.stdout)


def run_torch(args, key) -> float:
  cmd = [_TORCH_PYTHON.value, os.path.join(TORCH_REFERENCE_DIR, args[0]), '--threads', '2',
         *args[1:]]
  out = subprocess.run(cmd, capture_output=True, text=True, check=True)
  value = _last_json(out.stdout)
  for k in key:
    value = value[k]
  return float(value)


def main(argv):
  del argv
  for name in _WORKLOADS.value:
    jax_args, steps, torch_args, key = WORKLOADS[name]
    jax_rates, torch_rates, compile_s = [], [], []
    for _ in range(_ROUNDS.value):
      result = run_jax(jax_args, steps)
      jax_rates.append(result['steps_per_sec'])
      compile_s.append(result['compile_s'])
      torch_rates.append(run_torch(torch_args, key))
    jax_rate, torch_rate = statistics.median(jax_rates), statistics.median(torch_rates)
    print(json.dumps({'workload': name, 'jax_steps_per_sec': jax_rate,
                      'torch_steps_per_sec': torch_rate, 'ratio': jax_rate / torch_rate,
                      'jax_runs': jax_rates, 'torch_runs': torch_rates,
                      'jax_compile_s': compile_s, 'jax_flops_per_step': result['flops_per_step'],
                      'jax_achieved_flops_per_sec': result['achieved_flops_per_sec']}),
          flush=True)


if __name__ == '__main__':
  app.run(main)
