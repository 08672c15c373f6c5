"""Orchestration only: config -> data -> models -> state -> step -> loop with evaluators."""
import signal
from typing import Optional

import jax
import ml_collections
import numpy as np

from wgan_jax import checkpoint, cli, config_lib, data, families, lipschitz, losses, optim
from wgan_jax import parallel
from wgan_jax import models as models_lib
from wgan_jax import step as step_lib
from wgan_jax import workdir as workdir_lib
from wgan_jax.errors import CheckpointError, Diverged, Fault, PeerLost, WorkdirError
from wgan_jax.eval import evaluators as evaluators_lib, image_eval
from wgan_jax.eval.evaluators import every
from wgan_jax.metrics_writer import MetricWriter
from wgan_jax.state import TrainState


class Run:
  """Everything built from a config before any state exists: pure functions, the parallel
  strategy and the data source."""

  def __init__(self, config, *, open_data: bool = True):
    """open_data=False: no data source (sampling / evaluating a checkpoint needs none)."""
    config_lib.validate(config)
    self.config = config
    self.loss = losses.get_loss(config.loss)
    self.plan = lipschitz.make_plan(config.lipschitz)
    self.data_shape, dataset_classes = data.describe(config.data)
    self.is_toy = data.is_toy(data.primary_name(config.data))
    model_config = ml_collections.ConfigDict(config.model.to_dict())
    model_config.d_norm = config_lib.critic_norm(config)
    # Class-conditional runs (config.conditional): 0 classes = unconditional.
    self.num_classes = config_lib.num_classes(config, dataset_classes)
    cond = dict(num_classes=self.num_classes,
                critic_head=config.conditional.method if self.num_classes else 'none')
    pair = models_lib.build_models(model_config, data_shape=self.data_shape, **cond)
    self.g_tx, self.d_tx = optim.make_optimizers(config)
    self.schedule = step_lib.CriticSchedule(**config_lib.critic_schedule_fields(config))
    # The step's settings on one device (init, sampling, evaluation); the step's own take
    # the strategy's slicing below.
    local_config = step_lib.StepConfig(
        n_critic=config.n_critic, batch_size=config.batch_size,
        g_batch_size=config_lib.g_batch_size(config), z_dim=pair.z_dim,
        seed=config.seed, ema_decay=config.ema_decay,
        random_flip=config.data.get('random_flip', False),
        ortho_reg=config.get('ortho_reg', 0.0), ema_start=config.get('ema_start', 0),
        critic_penalised=self.plan.penalty is not None,
        **({k: config.conditional[k] for k in ('acgan_d_weight', 'acgan_g_weight')}
           if self.num_classes else {}))
    # The family (wgan_jax.families) over the pair: its networks (the pair, or the pair's
    # generator with the family's encoder / inverse map and critic side) are the run's.
    self.family = families.build(config, models=pair, loss=self.loss, cfg=local_config)
    self.models = self.family.models
    # The strategy after the models: `jit` places the state by the sharding rules, checked
    # here against the abstract init (one ConfigError line before anything is written).
    self.mesh, self.state_sharding = self._placement()
    self.strategy = parallel.make_strategy(config.parallel.strategy, self.mesh,
                                           self.state_sharding)
    parallel.check_batch(config, self.strategy.num_shards, jax.process_count())
    self.step_config = local_config._replace(
        num_shards=self.strategy.num_shards if self.strategy.axis_name else 1,
        axis_name=self.strategy.axis_name)
    # Init, sampling and evaluation run outside the step; under pmap the step's batch norms
    # average their statistics over the devices (same parameters and state).
    self.step_family = self.family
    if self.strategy.axis_name is not None:
      step_pair = models_lib.build_models(model_config, data_shape=self.data_shape,
                                          bn_axis_name=self.strategy.axis_name, **cond)
      self.step_family = families.build(config, models=step_pair, loss=self.loss,
                                        cfg=self.step_config,
                                        bn_axis_name=self.strategy.axis_name)
    # The data last: every config error is found before a split is loaded.
    self.source = data.make_source(
        config.data, seed=config.seed, process_index=jax.process_index(),
        process_count=jax.process_count()) if open_data else None
    # data.placement device: the split's uint8 images on every device, once (by batch key:
    # 'table', and 'table_b' for domain B of two-domain runs).
    self.tables = {k: self.strategy.put_table(t)
                   for k, t in (data.take_tables(self.source) if open_data else {}).items()}

  def close(self) -> None:
    """Stops the data source's workers (data.placement stream) and closes its files."""
    if self.source is not None:
      self.source.close()

  def _init(self, key) -> TrainState:
    return step_lib.init_state(
        family=self.family, g_tx=self.g_tx, d_tx=self.d_tx, key=key,
        batch_size=min(self.config.batch_size, 8),
        ema=self.config.ema_decay > 0)

  def _placement(self):
    """(mesh, state shardings): the (data, fsdp) mesh of parallel.mesh and the sharding
    rules applied to the abstract init under `jit`; (None, None) for single and pmap."""
    p = self.config.parallel
    if p.strategy != 'jit':
      return None, None
    mesh = parallel.make_2d_mesh(parallel.parse_mesh(p.mesh, jax.device_count()))
    abstract = jax.eval_shape(self._init, jax.random.PRNGKey(0))
    return mesh, parallel.state_shardings(abstract, mesh, p.sharding_rules, p.fsdp_min_bytes)

  def init_state(self) -> TrainState:
    """The initial state in canonical layout: under `jit` created sharded by the rules
    (jit of the init with those out_shardings, never whole on one device); replicated over
    the 1-D mesh under pmap."""
    key = jax.random.PRNGKey(self.config.seed)
    if self.state_sharding is not None:
      return jax.jit(self._init, out_shardings=self.state_sharding)(key)
    state = jax.jit(self._init)(key)
    return state if self.strategy.name == 'single' else parallel.to_replicated(
        jax.device_get(state), parallel.make_mesh())

  def abstract_state(self):
    """The initial state's shapes, dtypes and placement (`init_state`'s), not computed: the
    target a checkpoint restores onto."""
    shapes = jax.eval_shape(self._init, jax.random.PRNGKey(self.config.seed))
    if self.state_sharding is not None:
      shardings = self.state_sharding
    elif self.strategy.name == 'single':
      shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]),
                               shapes)
    else:
      shardings = jax.tree.map(lambda _: parallel.replicated_sharding(parallel.make_mesh()),
                               shapes)
    return jax.tree.map(lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                                                 sharding=sharding),
                        shapes, shardings)

  def step_fn(self, n_critic: Optional[int] = None):
    """The pure train step (state, batch) -> (state, metrics) with n_critic critic updates
    (default config.n_critic)."""
    cfg = self.step_config._replace(n_critic=n_critic or self.step_config.n_critic)
    return step_lib.make_train_step(family=self.step_family, loss=self.loss, plan=self.plan,
                                    g_tx=self.g_tx, d_tx=self.d_tx, cfg=cfg)

  def train_step(self, n_critic: Optional[int] = None):
    """The compiled train step of the strategy; its state argument is donated."""
    return self.strategy.compile(self.step_fn(n_critic))

  def train_steps(self):
    """step -> the compiled train step of generator step `step` (its critic updates from
    the critic schedule), each K compiled once, on first use."""
    compiled = {}

    def at(step: int):
      k = step_lib.critic_updates_at(step, self.schedule)
      if k not in compiled:
        compiled[k] = self.train_step(k)
      return compiled[k]

    return at

  def batch(self, step: int) -> dict:
    """This process's real examples of step `step`, laid out for the strategy:
    {'x' [K, B, ...]} (float32 2-D points, uint8 images) or {'index': int32 [K, B],
    'table': the placed images} (data.placement device), plus {'label': int32 [K, B]} for
    class-conditional runs, and domain B's under keys ending in _b for two-domain runs
    (wgan_jax.data.pair); K and the data position from the critic schedule."""
    shape = (step_lib.critic_updates_at(step, self.schedule), self.config.batch_size)
    start = step_lib.critic_updates_before(step, self.schedule) * self.config.batch_size
    batch, labels = self.source.batches(step, shape=shape, start=start)
    if self.num_classes:
      batch['label'] = np.asarray(labels, np.int32)
    batch = self.strategy.put_batch(batch)
    batch.update(self.tables)
    return batch

  def sample_fn(self):
    """Jitted (g_params, g_state, z[, labels]) -> samples, the generator in inference mode;
    conditional runs take int labels [n] (one class per sample)."""
    g_apply = self.models.g.apply
    if self.num_classes:
      return jax.jit(lambda p, s, z, labels: g_apply(p, s, None, z, labels=labels,
                                                     is_training=False)[0])
    return jax.jit(lambda p, s, z: g_apply(p, s, None, z, is_training=False)[0])

  def sampling_state(self, state: TrainState) -> TrainState:
    """`state` as sampling should see it: with eval.standing_stats = N > 0, G's batch-norm
    statistics replaced by standing statistics of the sampling weights (N training-mode
    passes of eval.batch_size, wgan_jax.eval.standing), else `state` itself."""
    n = self.config.eval.get('standing_stats', 0)
    if not n:
      return state
    from wgan_jax import rng  # pylint: disable=import-outside-toplevel
    from wgan_jax.eval import standing  # pylint: disable=import-outside-toplevel
    from wgan_jax.state import sampling_params  # pylint: disable=import-outside-toplevel
    if getattr(self, '_standing_fn', None) is None:  # compiled once per Run
      self._standing_fn = jax.jit(lambda p, s, key: standing.accumulate_standing_stats(
          self.models.g.apply, p, s, key=key, num_accumulations=n,
          batch_size=self.config.eval.batch_size, z_dim=self.models.z_dim,
          num_classes=self.num_classes))
    key = rng.stream_key(self.config.seed, rng.STANDING_STREAM)
    g = state.g._replace(state=self._standing_fn(sampling_params(state), state.g.state, key))
    return state._replace(g=g)

  def eval_labels(self, n: int):
    """Balanced classes of n evaluation samples, arange(n) % num_classes (None if unconditional)."""
    return np.arange(n, dtype=np.int32) % self.num_classes if self.num_classes else None

  def critic_fn(self):
    """Jitted (d_params, d_state, x) -> scores, not updating the critic's state (the
    label-free part of a projection critic)."""
    d_apply = self.models.d.apply
    return jax.jit(lambda p, s, x: d_apply(p, s, None, x, update_stats=False)[0])


def make_evaluators(run: Run, workdir: str, images=None, is_chief: bool = True) -> list:
  """The evaluators of the run's config (wgan_jax.eval.evaluators), in the order their
  scalars are logged: the toy evaluation (2-D data) or the sample grid (images), then the
  image metrics where eval.metrics_every_steps > 0. images: where their figures go in
  TensorBoard (a MetricWriter), or None. Those with `every_process` run in every process
  (the image metrics' passes use every device); the others in the chief only."""
  metrics = image_eval.make_image_evaluator(run, workdir, is_chief=is_chief)
  return (evaluators_lib.sample_evaluators(run, workdir, images=images)
          + ([metrics] if metrics is not None else []))


FINITE_KEY = 'all_finite'  # the step's finiteness flag (wgan_jax.step), checked, not logged


def _to_host(metrics) -> dict:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


class Preempted(Fault):
  """SIGTERM or SIGINT arrived; the state of `step` was saved before stopping.
  exit_code: 128 + the signal's number (143 for SIGTERM, 130 for SIGINT)."""

  def __init__(self, step: int, signum: int = signal.SIGTERM):
    what = ('interrupted (SIGINT, Ctrl-C)' if signum == signal.SIGINT
            else f'preempted ({signal.Signals(signum).name})')
    super().__init__(f'{what} after step {step}; checkpoint saved, rerun the same command to '
                     f'resume')
    self.step = step
    self.exit_code = 128 + int(signum)


def _sync_processes(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)


def restore_or_init(run: Run, workdir: str, ckpt: checkpoint.Checkpointer,
                    is_chief: bool = True) -> TrainState:
  """The newest checkpoint of the workdir that reads, else a fresh state.

  The restore target is the fresh state's layout: under `jit` the sharding rules on this
  run's mesh, so a checkpoint saved on any mesh, device count or strategy resumes here.

  Checkpoints that do not read (truncated or missing files, NaN / inf values) are skipped
  with one warning line each and moved aside (`<step>.broken-<time>`), so they neither count
  toward keep_checkpoints nor block the save of their step later.
  """
  if ckpt.latest_step() is None:
    return run.init_state()
  skipped = []

  def skip(step: int, reason: str) -> None:
    skipped.append(step)
    if is_chief:
      checkpoint.move_aside(workdir, step, f'skipped {reason} (resuming from the newest one '
                                           f'that reads)')

  found = ckpt.restore_newest(run.abstract_state(), on_skip=skip)
  if skipped:
    _sync_processes('wgan_jax.restore_or_init')
    ckpt.reload()
  if found is None:
    if is_chief:
      checkpoint.warn(f'no checkpoint of {workdir!r} reads; starting from step 0')
    return run.init_state()
  return found[0]


def _nonfinite_message(step: int, record: dict, state, workdir: str, last_saved) -> str:
  """One line: what became NaN / inf at `step`, the last finite checkpoint, the fix."""
  first = ('d_loss', 'g_loss', 'd_grad_norm', 'g_grad_norm')
  bad = sorted((k for k, v in record.items() if k != FINITE_KEY and not np.isfinite(v)),
               key=lambda k: (k not in first, first.index(k) if k in first else 0, k))
  if bad:
    what = ', '.join(f'{k}={record[k]}' for k in bad[:3]) + (
        f' (and {len(bad) - 3} more metrics)' if len(bad) > 3 else '')
  else:
    leaves = checkpoint.nonfinite_leaves(state)
    what = f'parameter {leaves[0]}' if leaves else 'the state'
  saved = (f'the last checkpoint, step {last_saved}, is finite' if last_saved is not None
           else 'no checkpoint was written')
  return (f'training diverged at step {step}: {what} not finite; stopped without saving it, '
          f'{saved} ({workdir!r}); lower the learning rates (optim.g.lr, optim.d.lr) or '
          f'change the Lipschitz method, in a new --workdir')


def train_and_evaluate(config, workdir: str, *, is_chief: Optional[bool] = None) -> dict:
  """Trains `config` in `workdir`, resuming from its latest checkpoint if it has one.

  Returns the last logged record (metrics with eval/ keys). Raises Preempted after saving
  when SIGTERM arrives.
  """
  is_chief = jax.process_index() == 0 if is_chief is None else is_chief
  run = Run(config)
  try:
    return _train_run(run, workdir, is_chief)
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, PeerLost) or not is_peer_lost(e):
      raise
    raise _lost_peer(e, workdir) from None  # a barrier before the loop: start-up, restore
  finally:
    run.close()


def _train_run(run: Run, workdir: str, is_chief: bool) -> dict:
  """train_and_evaluate of a built Run."""
  config = run.config
  image_eval.validate(config, is_toy=run.is_toy)  # missing weights / stats: before any write
  checkpoint.check_resumable(workdir, config.to_dict())  # before anything is written
  workdir_lib.prepare(workdir)
  if is_chief:
    checkpoint.move_aside_incomplete(workdir)  # never counted by the manager below
  _sync_processes('wgan_jax.move_aside_incomplete')
  ckpt = checkpoint.Checkpointer(workdir, keep=config.keep_checkpoints)
  try:
    state = restore_or_init(run, workdir, ckpt, is_chief)
  except BaseException:
    ckpt.close()
    raise
  start = int(state.step)
  if is_chief:
    workdir_lib.write_json(workdir_lib.path(workdir, checkpoint.CONFIG_FILE), config.to_dict())
  writer = MetricWriter(workdir, total_steps=config.total_steps, enabled=is_chief,
                        resume_step=start)
  lost = None

  def on_lost(reason: str) -> None:  # the watchdog's thread: leave at once, one line
    cli.leave_now(_peer_lost_message(reason, workdir), PeerLost.exit_code)

  try:
    with parallel.PeerWatchdog(parallel.heartbeat_timeout(), on_lost):
      return _loop(run, state, start, ckpt, writer, workdir, is_chief)
  except Exception as e:  # pylint: disable=broad-except
    if not is_peer_lost(e):  # a step's collective, or a save's barrier (a ValueError)
      raise
    lost = _lost_peer(e, workdir)
  finally:
    try:
      if lost is None:  # a save in flight would wait for the dead peer: left unfinished
        ckpt.close()
    finally:
      writer.close()
  raise lost


# What a collective with a dead (or unreachable) process raises, by backend.
PEER_LOST_MARKERS = ('Connection reset by peer', 'Connection closed by peer', 'Gloo',
                     'heartbeat', 'UNAVAILABLE', 'NCCL')


def is_peer_lost(error: BaseException) -> bool:
  """Whether a runtime error of a multi-process job is a collective that failed because
  another process died (False in a single-process run)."""
  return jax.process_count() > 1 and any(m in str(error) for m in PEER_LOST_MARKERS)


def _lost_peer(error: BaseException, workdir: str) -> PeerLost:
  """The PeerLost of a collective or barrier that failed because a peer died."""
  lines = str(error).strip().splitlines()
  return PeerLost(_peer_lost_message(
      f'a collective failed: {lines[0][:160] if lines else type(error).__name__}', workdir))


def _peer_lost_message(reason: str, workdir: str) -> str:
  """One line: a peer died, how it showed, the checkpoint a restart resumes from."""
  latest = checkpoint.latest_step(workdir)
  resume = (f'the last complete checkpoint is step {latest}' if latest is not None
            else 'no checkpoint was written yet')
  return (f'a peer process of this {jax.process_count()}-process job died or became '
          f'unreachable ({reason}); {resume} ({workdir!r}); restart every '
          f'process with the same command to resume')


def _loop(run: Run, state: TrainState, start: int, ckpt, writer, workdir, is_chief) -> dict:
  """The train loop from `start`; `state` is canonical (see wgan_jax.parallel)."""
  config, strategy = run.config, run.strategy
  total = config.total_steps
  train_step_at = run.train_steps()  # by step: the critic schedule's K
  evaluators = make_evaluators(run, workdir, images=writer, is_chief=is_chief)
  pending = None  # (step, device metrics): fetched one step late, no host sync in the loop
  last = {}
  batch = run.batch(start) if start < total else None
  device_state = strategy.to_device(state)
  writer.start(start)
  config_dict = config.to_dict()

  def check_finite(step: int, record: dict, device_state) -> dict:
    """`record` without the flag; Diverged (one line) when the step was not finite."""
    record = dict(record)
    if record.pop(FINITE_KEY, 1.0) != 1.0:
      if record:
        writer.write(step, record)  # the non-finite values, for the post-mortem
      ckpt.wait()
      raise Diverged(_nonfinite_message(step, record, strategy.to_canonical(device_state),
                                        workdir, ckpt.latest_step()))
    return record

  with checkpoint.PreemptionWatcher() as watcher:
    for step in range(start, total):
      device_state, metrics = train_step_at(step)(device_state, batch)
      done = step + 1
      if pending is not None:  # the previous logged step's metrics, ready by now
        last = writer.write(pending[0], check_finite(pending[0], _to_host(pending[1]),
                                                     device_state))
        pending = None
      if done < total:
        batch = run.batch(done)  # overlaps with the step running on the device
      if every(done, config.log_every_steps, total):
        pending = (done, strategy.metrics(metrics))
      due = [e for e in evaluators if e.due(done)]
      # Read once: a signal arriving later is handled next step. Multi-process: every
      # process acts on the same value at the same step (one tiny collective per step).
      stop = parallel.agreed_signal(watcher.requested)
      is_save = every(done, config.checkpoint_every_steps, total) or bool(stop)
      if due or is_save:  # a synchronous moment anyway: check, log, then save
        current = check_finite(done, _to_host(strategy.metrics(metrics)), device_state)
        state = strategy.to_canonical(device_state)
        record = current if pending is not None else {}
        # Every process: leaves sharded over processes are gathered collectively.
        whole = parallel.local_copy(state) if due else None
        for evaluator in due:
          if is_chief or evaluator.every_process:
            record.update(evaluator(whole, done))
        if record:
          last = writer.write(done, record)
        pending = None
      if is_save:
        ckpt.save(done, state, {'step': done, 'data_position': done,
                                'device_count': jax.device_count(),
                                'strategy': strategy.name, 'config': config_dict})
      if stop:
        ckpt.wait()
        raise Preempted(done, stop)
  return last


def load_for_inference(workdir: str, step: Optional[int] = None):
  """(run, state, step) of a workdir's checkpoint (the latest, or `step`), no data opened.

  The config is the one stored in the checkpoint (config.json for checkpoints saved before
  configs were stored in them), in today's layout (config_lib.upgrade_eval). Without `step`,
  a checkpoint that does not read is skipped with one warning line for the newest one that
  does.

  Raises WorkdirError when the workdir has no such checkpoint, CheckpointError when it
  does not read (`step` given, or none reads) or holds NaN / inf values.
  """
  steps = checkpoint.all_steps(workdir)
  if not steps:
    if not workdir_lib.path(workdir, checkpoint.CONFIG_FILE).exists():
      raise WorkdirError(f'{workdir!r} has no {checkpoint.CONFIG_FILE}; pass the --workdir of '
                         f'a training run')
    raise WorkdirError(f'{workdir!r} has no complete checkpoint yet; train longer or pass '
                       f'another --workdir')
  if step is not None and step not in steps:
    raise WorkdirError(f'{workdir!r} has no checkpoint at step {step}; available: '
                       f'{", ".join(map(str, steps))}')
  candidates = [step] if step is not None else steps[::-1]
  ckpt = checkpoint.Checkpointer(workdir, keep=len(steps))
  runs = {}
  try:
    for candidate in candidates:
      try:
        saved = checkpoint.checkpoint_config(workdir, candidate)
        if saved is None:
          saved = checkpoint.read_config(workdir)
        if saved is None:
          raise CheckpointError(f'checkpoint {candidate} in {workdir!r} holds no config and '
                                f'there is no {checkpoint.CONFIG_FILE}')
        key = repr(sorted(checkpoint.flatten_config(saved).items()))
        if key not in runs:
          config = ml_collections.ConfigDict(config_lib.upgrade_eval(saved))
          # Inference is local, on any device count (the saved mesh is jit's).
          local = config_lib.base_config().parallel
          config.parallel.update(strategy='single', mesh=local.mesh,
                                 sharding_rules=local.sharding_rules)
          runs[key] = Run(config, open_data=False)
        run = runs[key]
        state, _ = ckpt.restore(candidate, run.abstract_state())
      except CheckpointError as e:
        others = [s for s in steps if s != candidate]
        if step is not None:
          raise CheckpointError(f'{e}; pass another --step (available: '
                                f'{", ".join(map(str, others)) or "none"})') from None
        if candidate == candidates[-1]:
          raise
        checkpoint.warn(f'skipped {e}; trying the previous one')
        continue
      bad = checkpoint.nonfinite_leaves(state)
      if bad:
        earlier = [s for s in steps if s < candidate]
        fix = (f', pass --step={earlier[-1]} for an earlier one' if earlier
               else ' and has no earlier checkpoint')
        raise CheckpointError(f'checkpoint {candidate} in {workdir!r} holds NaN or infinite '
                              f'values ({bad[0]}); the run diverged{fix}')
      return run, state, candidate
  finally:
    ckpt.close()
  raise AssertionError('unreachable')
