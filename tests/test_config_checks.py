"""Config validation of the task options: each mistake is one clear UserError."""

import json

import pytest

from adder_jax import config_checks
from adder_jax import inference
from adder_jax import train
from adder_jax.errors import UserError
from configs import default
from configs import two_images


def _config(**overrides):
  config = default.get_config()
  # Keyword names spell the config's dots as '__'.
  config.update_from_flattened_dict({name.replace("__", "."): value
                                     for name, value in overrides.items()})
  return config


@pytest.mark.parametrize("overrides", [
    {}, {"task": "two_images", "supervision": "sum_only", "model__sum_head": "exact"},
    {"data__holdout_pairs": "3+4,7+2", "model__sum_head": "exact", "supervision": "digit_only"},
    {"data__holdout_pairs": "10"}, {"data__validation_size": 5000},
    # Spellings of "nothing held out" pass with any task.
    {"task": "two_images", "data__holdout_pairs": "0"},
    {"task": "two_images", "data__holdout_pairs": " "},
    {"task": "two_images", "supervision": "sum_only", "model__sum_head": "exact",
     "data__pairing": "fixed"}])
def test_valid_configs_pass(overrides):
  config_checks.validate(_config(**overrides))


@pytest.mark.parametrize("overrides, match", [
    ({"task": "three_images"}, "config.task 'three_images' is unknown"),
    ({"supervision": "none"}, "config.supervision 'none' is unknown"),
    ({"model__sum_head": "lookup"}, "config.model.sum_head 'lookup' is unknown"),
    ({"supervision": "sum_only", "loss__sum_weight": 0.0}, "loss.sum_weight alone"),
    ({"supervision": "digit_only", "loss__digit_weight": 0.0}, "loss.digit_weight alone"),
    ({"data__holdout_pairs": "3+x"}, "holdout_pairs: bad pair '3\\+x'"),
    ({"data__holdout_pairs": "3+4", "task": "two_images"},
     "config.task='two_images' holds out no pairs, got config.data.holdout_pairs='3\\+4'"),
    ({"model__sum_head": "exact", "loss__label_smoothing": 0.1}, "label_smoothing must be 0"),
    ({"data__validation_size": -1}, "validation_size must be a whole number"),
    ({"data__pairing": "once"}, "config.data.pairing 'once' is unknown; choose one of fresh, fixed"),
    ({"data__pairing": "fixed"}, "config.task='image_plus_number' pairs each image with a fresh "
                                 "number, got config.data.pairing='fixed'"),
])
def test_bad_task_options_are_user_errors(overrides, match):
  with pytest.raises(UserError, match=match):
    config_checks.validate(_config(**overrides))


def test_two_image_benchmark_config_is_valid():
  config_checks.validate(two_images.get_config())


@pytest.mark.parametrize("overrides, match", [
    ({"model__sum_head_input": "features"}, "config.model.sum_head_input 'features' is unknown"),
    ({"model__dtype": "float16"}, "config.model.dtype 'float16' is unknown"),
    ({"gradient_kernels": "fast"}, "config.gradient_kernels 'fast' is unknown"),
    ({"model__conv_layers": "32 64X"}, "bad token '64X'"),
])
def test_bad_model_and_kernel_options_are_user_errors(overrides, match):
  with pytest.raises(UserError, match=match):
    train.check_config(_config(**overrides))


@pytest.mark.parametrize("overrides, match", [
    ({"optimizer__name": "adagrad"}, "config.optimizer.name 'adagrad' is unknown"),
    ({"optimizer__schedule": "step"}, "config.optimizer.schedule 'step' is unknown"),
    ({"optimizer__learning_rate": 0.0}, "config.optimizer.learning_rate must be a positive"),
])
def test_bad_optimizer_options_are_user_errors(overrides, match):
  with pytest.raises(UserError, match=match):
    train.check_config(_config(**overrides))


def test_a_trained_model_is_checked_without_the_training_sections():
  """Loading a trained model reads no optimizer: `config_checks.validate` leaves that
  section to training's check."""
  config = _config(optimizer__name="adagrad")
  config_checks.validate(config)
  with pytest.raises(UserError):
    train.check_config(config)


def test_batches_must_split_over_the_devices():
  config = _config(batch_size=36)
  config_checks.check_batches_split(config, num_devices=4)
  with pytest.raises(UserError, match="config.batch_size=36 does not divide by the 8 devices"):
    config_checks.check_batches_split(config, num_devices=8)
  config_checks.check_batches_split(config, num_devices=8, names=("eval_batch_size",))


@pytest.mark.parametrize("change, words", [
    (lambda c: c["model"].pop("zero_init_logits"), "this version of adder_jax"),
    (lambda c: c["model"].update(batch_norm=1), "config.model.batch_norm must be True or False"),
])
def test_a_saved_config_that_this_version_cannot_use_is_one_line(tmp_path, change, words):
  """config.json of a run is read without ml_collections' types: a field missing (a run
  of an older version) or of the wrong type is one line."""
  saved = json.loads(default.get_config().to_json())
  change(saved)
  (tmp_path / "config.json").write_text(json.dumps(saved))
  with pytest.raises(UserError, match=words) as error:
    inference.load_config(str(tmp_path))
  assert "\n" not in str(error.value)
