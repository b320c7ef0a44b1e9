"""Golden values of one train step, and the train step's basic invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adder_jax import models
from adder_jax import objectives
from adder_jax import optimizers
from adder_jax import steps
from configs import default

# One adamw step of the tiny network below on a fixed batch, recorded on CPU.
GOLDEN_LOSS = 4.823273658752441
GOLDEN_PARAM_SUM = 16.6644055058714
GOLDEN_PARAM_ABS_SUM = 628.5962914424017
GOLDEN_BN_MEAN_SUM = -0.1664443016052246


def _tiny_setup():
  config = default.get_config()
  config.model.conv_layers = "4M 8v"
  config.model.dense_features = (16,)
  config.model.sum_hidden_features = (8,)
  config.model.sum_head_input = "probabilities"
  config.model.batch_norm = True
  config.model.dropout_rate = 0.25
  config.model.dtype = "float32"
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "constant"
  config.optimizer.weight_decay = 1e-4
  config.loss.digit_weight = 1.0
  config.loss.sum_weight = 1.0
  config.loss.label_smoothing = 0.0
  model = models.create_model(config.model)
  tx, _ = optimizers.create_optimizer(config.optimizer, total_steps=10)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (8, 28, 28), dtype=np.uint8)
  labels = rng.integers(0, 10, 8).astype(np.int32)
  numbers = rng.integers(0, 10, 8).astype(np.int32)
  batch = {"inputs": {"images": images, "numbers": numbers}, "label": labels,
           "sum": labels + numbers}
  return config, model, tx, batch


def _jitted_step(loss_config):
  recipe = steps.Recipe(objective=objectives.cross_entropy_objective(loss_config),
                        gather=None, batch_sharding=None)
  return jax.jit(lambda s, b: steps.train_step(s, b, recipe))


def _one_step():
  config, model, tx, batch = _tiny_setup()
  state = steps.init_state(model, tx, jax.random.key(0), batch["inputs"])
  return state, *_jitted_step(config.loss)(state, batch)


def test_one_train_step_golden_values():
  # A change here means the initialisation, model, loss or optimizer computes
  # something different: intended changes re-record the values.
  _, state, metrics = _one_step()
  np.testing.assert_allclose(float(metrics["loss"]), GOLDEN_LOSS, rtol=1e-5)
  params = jax.tree.leaves(state.params)
  np.testing.assert_allclose(sum(float(jnp.sum(p)) for p in params), GOLDEN_PARAM_SUM, rtol=1e-5)
  np.testing.assert_allclose(sum(float(jnp.sum(jnp.abs(p))) for p in params), GOLDEN_PARAM_ABS_SUM, rtol=1e-5)
  bn_mean = state.batch_stats["digit_net"]["BatchNorm_0"]["mean"]
  np.testing.assert_allclose(float(jnp.sum(bn_mean)), GOLDEN_BN_MEAN_SUM, rtol=1e-4)


def test_train_step_moves_every_parameter_and_counts_the_step():
  before, after, metrics = _one_step()
  assert int(after.step) == 1
  for old, new in zip(jax.tree.leaves(before.params), jax.tree.leaves(after.params)):
    assert not np.allclose(old, new)
  assert metrics["digit_correct"].shape == (8,)
  assert 0 <= int(metrics["digit_correct"].sum()) <= 8


def test_training_on_one_batch_lowers_the_loss():
  config, model, tx, batch = _tiny_setup()
  state = steps.init_state(model, tx, jax.random.key(0), batch["inputs"])
  step = _jitted_step(config.loss)
  state, first = step(state, batch)
  for _ in range(100):
    state, last = step(state, batch)
  assert float(last["loss"]) < 0.75 * float(first["loss"])


@pytest.mark.parametrize("supervision, digit_weight, sum_weight", [
    ("both", 0.5, 2.0), ("sum_only", 0.0, 2.0), ("digit_only", 0.5, 0.0)])
def test_supervision_zeroes_the_weight_of_the_unsupervised_target(supervision, digit_weight,
                                                                   sum_weight):
  loss_config = default.get_config().loss
  loss_config.digit_weight, loss_config.sum_weight = 0.5, 2.0
  supervised = objectives.supervised_loss_config(loss_config, supervision)
  assert (supervised.digit_weight, supervised.sum_weight) == (digit_weight, sum_weight)
  assert (loss_config.digit_weight, loss_config.sum_weight) == (0.5, 2.0)


@pytest.mark.parametrize("supervision, unused", [("sum_only", "label"), ("digit_only", "sum")])
@pytest.mark.slow
def test_training_never_reads_the_unsupervised_target(supervision, unused):
  config, model, tx, batch = _tiny_setup()
  loss_config = objectives.supervised_loss_config(config.loss, supervision)
  state = steps.init_state(model, tx, jax.random.key(0), batch["inputs"])
  step = _jitted_step(loss_config)
  scrambled = dict(batch, **{unused: (batch[unused] + 3) % 10})
  trained, _ = step(state, batch)
  trained_on_scrambled, _ = step(state, scrambled)
  for a, b in zip(jax.tree.leaves(trained.params), jax.tree.leaves(trained_on_scrambled.params)):
    np.testing.assert_array_equal(a, b)
