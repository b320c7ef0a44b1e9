"""The training loop: `train_and_evaluate(config, workdir)`.

It loads MNIST onto the devices once, then runs each epoch as a few compiled chunks of
`lax.scan`-ned train steps (shuffling and pairing happen on the device), evaluates on
the test set (and on a validation split carved from the training images, if the config
asks for one), writes metrics and saves a checkpoint. Rerunning on the same workdir
resumes from the latest checkpoint and gives the same metrics as an unbroken run.

In a multi-process run (see distributed.py) every process runs this same loop on the
global mesh; only process 0 writes metrics.jsonl, TensorBoard events and config.json,
and every process takes part in saving and restoring checkpoints.
"""

import dataclasses
import functools
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from adder_jax import augment
from adder_jax import checkpointing
from adder_jax import config_checks
from adder_jax import distributed
from adder_jax import evaluation
from adder_jax import evaluation_report
from adder_jax import interrupts
from adder_jax import kernels
from adder_jax import mnist
from adder_jax import models
from adder_jax import optimizers
from adder_jax import reporting
from adder_jax import sharding
from adder_jax import steps
from adder_jax import tasks
from adder_jax import workdir_lock
from adder_jax.errors import UserError


def check_config(config):
  """Raises UserError for the first bad value of a training config: `config_checks`'
  checks, and those of the sections only training reads."""
  config_checks.validate(config)
  config_checks.one_of(config.gradient_kernels, "gradient_kernels", kernels.GRADIENT_KERNELS)
  optimizers.check_config(config.optimizer)


class Trainer:
  """The compiled functions and device-resident data of one run; no mutable state.

  Built once per run by `train_and_evaluate`; the benchmark script drives it directly.
  The config must have passed `check_config` and `config_checks.check_batches_split`.
  """

  def __init__(self, config, data, mesh=None):
    self.config = config
    self.task = tasks.create_task(config)
    self.mesh = sharding.create_mesh() if mesh is None else mesh
    self.num_train = self.task.num_examples(len(data["train"]))
    self.steps_per_epoch = self.num_train // config.batch_size
    if self.steps_per_epoch == 0:
      raise UserError(f"batch_size={config.batch_size} is larger than the training set "
                      f"({self.num_train} examples).")
    self.total_steps = self.steps_per_epoch * config.num_epochs
    # Gradient kernels per the config and the devices' platform (kernels.py); each
    # device loops over its own block of the batch.
    self.model = self.task.create_model(kernels.layers(
        config.gradient_kernels, self.mesh.devices.flat[0].platform, self.mesh.size))
    self.tx, self.schedule = optimizers.create_optimizer(config.optimizer, self.total_steps)
    seed_key = jax.random.key(config.seed)
    self.init_key, self.data_key = jax.random.split(seed_key)

    replicated = sharding.replicated(self.mesh)
    self.train_images, self.train_labels = sharding.put_replicated(
        (data["train"].images, data["train"].labels), self.mesh)
    self.test_split = data["test"]
    self.test_predictor = evaluation.TestPredictor(self.task, self.model, self.test_split,
                                                   self.mesh)
    # Carved from the training images when config.data.validation_size > 0.
    self.validation_split = data.get("validation")
    self.validation_predictor = (
        evaluation.TestPredictor(self.task, self.model, self.validation_split, self.mesh)
        if self.validation_split is not None else None)
    inputs = self.task.example_inputs()
    ema = config.ema_decay > 0
    self._init = jax.jit(functools.partial(steps.init_state, self.model, self.tx,
                                           inputs=inputs, ema=ema), out_shardings=replicated)
    self.abstract_state = steps.abstract_state(self.model, self.tx, inputs, ema)
    self.state_sharding = jax.tree.map(lambda _: replicated, self.abstract_state)
    self._epoch_plan = jax.jit(self.task.epoch_plan, out_shardings=replicated)
    self.recipe = steps.Recipe(
        objective=self.task.objective, gather=self.task.gather,
        batch_sharding=sharding.batch_sharded(self.mesh),
        augment=augment.from_config(config.augment), ema_decay=config.ema_decay)
    self._chunk_fns = {}

  def init_state(self):
    return self._init(self.init_key)

  def restore(self, checkpointer):
    """The latest checkpoint's TrainState, replicated over the mesh; None if there is none."""
    replicated = sharding.replicated(self.mesh)
    targets = {name: checkpointing.restore_target(item, replicated)
               for name, item in self.abstract_state.checkpoint_items().items()}
    restored = checkpointer.restore(targets)
    if restored is None:
      return None
    step, items = restored
    # Each process lists the checkpoints itself: they must have found the same one.
    distributed.check_same_on_all_processes([np.int32(step)], "checkpoint step")
    return self.abstract_state.replace_items(
        sharding.put_replicated(np.int32(step), self.mesh), items)

  def chunk_lengths(self, start=0):
    """Lengths of the scanned chunks that cover the epoch's steps from `start` on."""
    chunk = min(self.config.steps_per_chunk, self.steps_per_epoch)
    remaining = self.steps_per_epoch - start
    return [chunk] * (remaining // chunk) + ([remaining % chunk] if remaining % chunk else [])

  def chunk_fn(self, num_steps):
    """The compiled train chunk of `num_steps` steps (compiled once per length)."""
    if num_steps not in self._chunk_fns:
      recipe = dataclasses.replace(self.recipe, chunk_steps=num_steps)
      replicated = sharding.replicated(self.mesh)
      self._chunk_fns[num_steps] = jax.jit(
          functools.partial(steps.train_chunk, recipe=recipe), donate_argnums=0,
          in_shardings=(self.state_sharding, replicated, replicated, replicated),
          out_shardings=(self.state_sharding, replicated))
    return self._chunk_fns[num_steps]

  def compile(self, start=0):
    """Compiles ahead of time every function an epoch needs; returns seconds taken."""
    t0 = time.perf_counter()
    plan = jax.eval_shape(self._epoch_plan, self.data_key, 0, self.train_labels)
    target = checkpointing.restore_target(self.abstract_state, sharding.replicated(self.mesh))
    for length in set(self.chunk_lengths(start)) | set(self.chunk_lengths()):
      self.chunk_fn(length).lower(target, (self.train_images, self.train_labels), plan,
                                  jnp.int32(0)).compile()
    for predictor in (self.test_predictor, self.validation_predictor):
      if predictor is not None:
        predictor.compile(*models.evaluation_variables(target.model_variables()))
    self._epoch_plan.lower(self.data_key, 0, self.train_labels).compile()
    return time.perf_counter() - t0

  def epoch_plan(self, epoch):
    return self._epoch_plan(self.data_key, epoch, self.train_labels)

  def run_chunk(self, state, plan, chunk_start, num_steps):
    return self.chunk_fn(num_steps)(state, (self.train_images, self.train_labels), plan,
                                    jnp.int32(chunk_start))

  def predictions(self, state):
    """The task's `predict` of `state` on the test set, as numpy (padding included)."""
    return self.test_predictor(*models.evaluation_variables(state.model_variables()))

  def test_metrics(self, predictions):
    """Test metrics of `predictions`; see the task's `test_metrics`."""
    return self.task.test_metrics(predictions, self.test_split)

  def validation_metrics(self, state):
    """The test metrics of `state` on the validation split, named validation_* instead
    of test_*; {} without a validation split."""
    if self.validation_predictor is None:
      return {}
    predictions = self.validation_predictor(
        *models.evaluation_variables(state.model_variables()))
    metrics = self.task.test_metrics(predictions, self.validation_split)
    return {"validation_" + key.removeprefix("test_"): value for key, value in metrics.items()}


def train_and_evaluate(config, workdir):
  """Trains `config` in `workdir` (resuming if it holds a checkpoint), then writes the
  evaluation report and plots of the final state (see evaluation_report.py).

  Returns:
    The metrics record of the last epoch.

  Raises:
    interrupts.TrainingInterrupted: on Ctrl-C, after saving a checkpoint.
    UserError: a bad config, or another run holds the workdir (see workdir_lock.py).
  """
  check_config(config)
  mesh = sharding.create_mesh()
  config_checks.check_batches_split(config, mesh.size)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  lock = workdir_lock.WorkdirLock(workdir)
  # Process 0 alone takes the lock; if it cannot, every process stops.
  distributed.chief_first(lambda: distributed.is_chief() and lock.acquire())
  try:
    return _train_and_evaluate(config, workdir, mesh)
  finally:
    lock.release()


def _train_and_evaluate(config, workdir, mesh):
  distributed.chief_first(lambda: mnist.prepare(config.data))
  data = mnist.load(config.data)
  distributed.check_same_on_all_processes(
      [data[split].images for split in data] + [data[split].labels for split in data],
      "MNIST data")
  trainer = Trainer(config, data, mesh)
  logging.info("%d devices, %d steps per epoch, %d parameters", trainer.mesh.size,
               trainer.steps_per_epoch,
               sum(x.size for x in jax.tree.leaves(trainer.abstract_state.params)))

  checkpointer = checkpointing.Checkpointer(workdir)
  chief = distributed.is_chief()
  state = trainer.restore(checkpointer)
  if checkpointer.damaged_steps:
    distributed.chief_first(lambda: checkpointer.set_aside_damaged(move=chief))
  if state is None:
    state = trainer.init_state()
    if chief:
      _write_config(config, workdir)
  step = int(jax.device_get(state.step))
  finished = step >= trainer.total_steps
  # The report that `python -m adder_jax.evaluate` writes, for the tasks it reads.
  reports = "evaluate" in trainer.task.uses
  if chief:
    reporting.print_start(workdir, step, trainer.steps_per_epoch, config.num_epochs, reports)
  # A finished run only re-evaluates: its metrics and TensorBoard events stay as they are.
  writer = (reporting.MetricWriter(workdir, resume_step=step) if chief and not finished
            else reporting.NullMetricWriter())
  record = (reporting.read_metrics(workdir) or [None])[-1]
  interrupt = interrupts.InterruptFlag().install()
  predictions = None
  try:
    start_epoch, start_in_epoch = divmod(step, trainer.steps_per_epoch)
    if not finished:
      compile_seconds = trainer.compile(start_in_epoch)
      logging.info("compiled in %.1f s", compile_seconds)
    for epoch in range(start_epoch, config.num_epochs):
      state, record, predictions = _train_epoch(trainer, state, epoch, start_in_epoch,
                                                checkpointer, interrupt, chief)
      start_in_epoch = 0
      record["compile_seconds"] = round(compile_seconds, 3)
      writer.write(record)
      _save(checkpointer, state)
      if chief:
        reporting.print_summary(record)
  finally:
    interrupt.uninstall()
    writer.close()
    checkpointer.close()
  if predictions is None and reports:  # Nothing left to train: a rerun of a finished run.
    predictions = trainer.predictions(state)  # Every process takes part in this.
  report = None
  if chief and reports:
    report = evaluation_report.write(workdir, int(jax.device_get(state.step)), trainer.task,
                                     trainer.test_split, predictions)
  if chief:
    reporting.print_files_written(workdir, int(jax.device_get(state.step)), not finished,
                                  report)
  return record


def _train_epoch(trainer, state, epoch, start, checkpointer, interrupt, show_progress):
  """One epoch from step `start` within it.

  Returns:
    The new state, the epoch's metrics record and the test predictions it came from.
  """
  config = trainer.config
  plan = trainer.epoch_plan(epoch)
  images = 0
  bar = reporting.progress_bar(epoch + 1, config.num_epochs, trainer.steps_per_epoch,
                               enabled=show_progress)
  bar.update(start)
  t0 = time.perf_counter()
  chunk_start = start
  with bar:
    for num_steps in trainer.chunk_lengths(start):
      if interrupt.requested:
        _save_and_stop(state, checkpointer)
      state, metrics = trainer.run_chunk(state, plan, chunk_start, num_steps)
      metrics, totals = jax.device_get((metrics, state.epoch_totals))
      if not np.isfinite(metrics["loss"]):
        kept = checkpointer.latest_step()
        raise UserError(
            f"training diverged: the loss became {float(metrics['loss'])} between steps "
            f"{epoch * trainer.steps_per_epoch + chunk_start} and "
            f"{epoch * trainer.steps_per_epoch + chunk_start + num_steps}; "
            + (f"the last good checkpoint (step {kept}) is kept. " if kept is not None
               else "no checkpoint had been saved yet. ") + "Lower the learning rate.")
      chunk_start += num_steps
      images += int(metrics["digits"])
      bar.set_postfix_str(reporting.progress_text(
          float(totals["loss"]) / chunk_start, images / (time.perf_counter() - t0)))
      bar.update(num_steps)
  train_seconds = time.perf_counter() - t0
  t1 = time.perf_counter()
  predictions = trainer.predictions(state)
  evaluated = {**trainer.test_metrics(predictions), **trainer.validation_metrics(state)}
  eval_seconds = time.perf_counter() - t1
  totals = jax.device_get(state.epoch_totals)  # The whole epoch's, resumed or not.
  record = {
      "epoch": epoch + 1,
      "step": int(jax.device_get(state.step)),
      "learning_rate": float(trainer.schedule(jax.device_get(state.step))),
      "train_loss": float(totals["loss"]) / trainer.steps_per_epoch,
      "train_digit_accuracy": 100.0 * float(totals["digit_correct"]) / float(totals["digits"]),
      "train_sum_accuracy": 100.0 * float(totals["sum_correct"]) / float(totals["sums"]),
      **evaluated,
      "epoch_seconds": round(train_seconds, 3),
      "eval_seconds": round(eval_seconds, 3),
      "images_per_second": round(images / train_seconds, 1),
  }
  return state, record, predictions


def _save_and_stop(state, checkpointer):
  step = int(jax.device_get(state.step))
  if checkpointer.latest_step() != step:
    _save(checkpointer, state)
  raise interrupts.TrainingInterrupted(
      f"interrupted: saved a checkpoint at step {step} in {checkpointer.directory}; "
      "rerun the same command to resume.")


def _save(checkpointer, state):
  checkpointer.save(int(jax.device_get(state.step)), state.checkpoint_items())


def _write_config(config, workdir):
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json(indent=2))
