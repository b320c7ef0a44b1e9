"""Exponential moving averages of the parameters (config.ema_decay): the closed form, a
checkpoint round trip, evaluation with them, and an exact resume mid-epoch."""


import jax
import numpy as np
import pytest

from adder_jax import checkpointing
from adder_jax import config_checks
from adder_jax import inference
from adder_jax import interrupts
from adder_jax import models
from adder_jax import objectives
from adder_jax import reporting
from adder_jax import sharding
from adder_jax import steps
from adder_jax import tasks
from adder_jax import train
from adder_jax.errors import UserError
from conftest import MOCK_EXAMPLES, ctrl_c_after_chunk, mock_mnist, small_config
from test_steps import _tiny_setup

DECAY = 0.9


def _steps(count, ema_decay):
  """`count` train steps of the tiny setup; the states before and after each step."""
  config, model, tx, batch = _tiny_setup()
  state = steps.init_state(model, tx, jax.random.key(0), batch["inputs"], ema=ema_decay > 0)
  recipe = steps.Recipe(objective=objectives.cross_entropy_objective(config.loss),
                        gather=None, batch_sharding=None, ema_decay=ema_decay)
  step = jax.jit(lambda s, b: steps.train_step(s, b, recipe))
  states = [state]
  for _ in range(count):
    states.append(step(states[-1], batch)[0])
  return states


@pytest.mark.slow
def test_after_k_steps_the_average_is_the_closed_form():
  k = 5
  states = _steps(k, DECAY)
  # ema_k = d^k p_0 + (1 - d) sum_{i=1..k} d^(k-i) p_i, for every parameter and statistic.
  for part in ("params", "batch_stats"):
    values = [getattr(s, part) for s in states]
    expected = jax.tree.map(
        lambda *p: DECAY ** k * p[0] + (1 - DECAY) * sum(
            DECAY ** (k - i) * p[i] for i in range(1, k + 1)), *values)
    for got, want in zip(jax.tree.leaves(states[-1].ema[part]), jax.tree.leaves(expected)):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  params, batch_stats = models.evaluation_variables(states[-1].model_variables())
  assert params is states[-1].ema["params"] and batch_stats is states[-1].ema["batch_stats"]


@pytest.mark.slow
def test_without_a_decay_there_is_no_average_and_the_same_training():
  with_ema, without = _steps(3, DECAY), _steps(3, 0.0)
  assert without[-1].ema == {}
  params, _ = models.evaluation_variables(without[-1].model_variables())
  assert params is without[-1].params
  for a, b in zip(jax.tree.leaves(with_ema[-1].params), jax.tree.leaves(without[-1].params)):
    np.testing.assert_array_equal(a, b)  # The averages never feed back into training.


@pytest.mark.slow
def test_the_average_survives_a_checkpoint_round_trip(tmp_path):
  config, model, tx, batch = _tiny_setup()
  state = _steps(2, DECAY)[-1]
  checkpointer = checkpointing.Checkpointer(str(tmp_path))
  checkpointer.save(2, state.checkpoint_items())
  checkpointer.close()
  replicated = sharding.replicated(sharding.create_mesh())
  # What using a trained model restores: the model's variables alone.
  abstract = models.abstract_variables(model, batch["inputs"], ema=True)
  checkpointer = checkpointing.Checkpointer(str(tmp_path))
  step, restored = checkpointer.restore(
      {"model": checkpointing.restore_target(abstract, replicated)})
  checkpointer.close()
  assert step == 2
  for a, b in zip(jax.tree.leaves(restored["model"]["ema"]), jax.tree.leaves(state.ema)):
    np.testing.assert_array_equal(a, b)


def _ema_config(tmp_path):
  config = small_config(tmp_path / "tfds")
  config.ema_decay = DECAY
  return config


@pytest.mark.slow
def test_evaluation_and_predict_use_the_average(tmp_path):
  workdir = str(tmp_path / "workdir")
  with mock_mnist(MOCK_EXAMPLES):
    train.train_and_evaluate(_ema_config(tmp_path), workdir)
  predictor = inference.Predictor(workdir)
  _, variables = inference.restore_variables(workdir, tasks.create_task(predictor.config),
                                             sharding.create_mesh())
  for a, b in zip(jax.tree.leaves(predictor._params), jax.tree.leaves(variables["ema"]["params"])):
    np.testing.assert_array_equal(a, b)
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(variables["ema"]["params"]),
                                                       jax.tree.leaves(variables["params"])))


@pytest.mark.slow
def test_resume_mid_epoch_ends_like_an_unbroken_run(tmp_path, monkeypatch):
  config = _ema_config(tmp_path)
  with mock_mnist(MOCK_EXAMPLES):
    train.train_and_evaluate(config, str(tmp_path / "unbroken"))
    workdir = str(tmp_path / "resumed")
    # After the first of epoch 2's two chunks.
    with ctrl_c_after_chunk(monkeypatch, 3):
      with pytest.raises(interrupts.TrainingInterrupted, match="checkpoint at step 9"):
        train.train_and_evaluate(config, workdir)
    train.train_and_evaluate(config, workdir)
  unbroken = reporting.read_metrics(str(tmp_path / "unbroken"))
  resumed = reporting.read_metrics(workdir)
  assert [r["step"] for r in resumed] == [r["step"] for r in unbroken] == [6, 12]
  # The test metrics come from the averages, restored mid-epoch and carried on.
  for key in ("test_loss", "test_digit_accuracy", "test_sum_accuracy"):
    assert resumed[-1][key] == unbroken[-1][key]


def test_bad_decay_is_refused(tmp_path):
  config = small_config(tmp_path / "tfds")
  for value in (-0.1, 1.0):
    config.ema_decay = value
    with pytest.raises(UserError, match="config.ema_decay must be a number in"):
      config_checks.validate(config)
