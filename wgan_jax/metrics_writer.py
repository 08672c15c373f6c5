"""Metrics out: metrics.jsonl, TensorBoard event files (scalars, text, the evaluators' images)
and a progress line on stdout."""
import json
import math
import time

from wgan_jax import workdir as workdir_lib

METRICS_FILE = 'metrics.jsonl'


def _format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s'


def kept_lines(file, last_step: int) -> list[str]:
  """The records of steps <= last_step in `file` (a line cut off by a kill is dropped)."""
  if not file.exists():
    return []
  kept = []
  for line in file.read_text().splitlines():
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue
    if record.get('step', 0) <= last_step:
      kept.append(json.dumps(record) + '\n')
  return kept


class MetricWriter:
  """Appends one JSON object per logged step; only the chief process writes."""

  PROGRESS_KEYS = ('d_loss', 'g_loss', 'critic_gap', 'penalty', 'eval/w1', 'eval/modes_covered',
                   'eval/fid', 'eval/is', 'eval/kid', 'eval/swd')

  def __init__(self, workdir: str, *, total_steps: int, enabled: bool = True,
               resume_step: int = 0):
    """resume_step: records after it (written before a preemption) are dropped."""
    self.enabled = enabled
    self.total_steps = total_steps
    self._tb = None
    self._file = None
    if enabled:
      file = workdir_lib.path(workdir, METRICS_FILE)
      self._file = workdir_lib.LineFile(file, kept_lines(file, resume_step))
      from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
      self._tb = SummaryWriter(logdir=workdir, flush_secs=30,
                               purge_step=resume_step + 1 if resume_step else None)
    self._t0 = self._step0 = None

  def start(self, step: int) -> None:
    self._t0, self._step0 = time.perf_counter(), step

  def write(self, step: int, metrics: dict) -> dict:
    """Writes `metrics` of generator step `step`; returns the record written."""
    record = {'step': int(step), **metrics}
    if not self.enabled:
      return record
    now = time.perf_counter()
    elapsed = now - self._t0
    # The rate over the interval since the last record (the first includes compilation).
    rate = (step - self._step0) / elapsed if elapsed > 0 and step > self._step0 else float('nan')
    self._t0, self._step0 = now, step
    record['steps_per_sec'] = rate
    self._file.append(json.dumps(record) + '\n')
    for key, value in metrics.items():
      if isinstance(value, str):  # e.g. eval/protocol/reference_split
        self._tb.add_text(key, value, step)
      else:
        self._tb.add_scalar(key, value, step)
    shown = '  '.join(f'{k} {metrics[k]:.4g}' for k in self.PROGRESS_KEYS if k in metrics)
    eta = (self.total_steps - step) / rate if rate > 0 else float('inf')
    print(f'step {step}/{self.total_steps}  {shown}  |  {rate:.2f} steps/s  '
          f'ETA {_format_duration(eta)}', flush=True)
    return record

  def image(self, step: int, tag: str, pixels) -> None:
    """Writes an image (uint8 [H, W, C], C = 1 or 3) of generator step `step` to TensorBoard."""
    if self.enabled:
      self._tb.add_image(tag, pixels, step, dataformats='HWC')

  def close(self) -> None:
    if self.enabled:
      self._file.close()
      self._tb.close()
