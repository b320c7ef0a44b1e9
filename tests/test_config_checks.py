"""Config validation of the task options: each mistake is one clear UserError."""

import pytest

from adder_jax import config_checks
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
    {"data__holdout_pairs": "10"}])
def test_valid_configs_pass(overrides):
  config_checks.validate(_config(**overrides), num_devices=1)


@pytest.mark.parametrize("overrides, match", [
    ({"task": "three_images"}, "config.task 'three_images' is unknown"),
    ({"supervision": "none"}, "config.supervision 'none' is unknown"),
    ({"model__sum_head": "lookup"}, "config.model.sum_head 'lookup' is unknown"),
    ({"supervision": "sum_only", "loss__sum_weight": 0.0}, "loss.sum_weight alone"),
    ({"supervision": "digit_only", "loss__digit_weight": 0.0}, "loss.digit_weight alone"),
    ({"data__holdout_pairs": "3+x"}, "holdout_pairs: bad pair '3\\+x'"),
    ({"data__holdout_pairs": "3+4", "task": "two_images"}, "needs config.task='image_plus_number'"),
    ({"model__sum_head": "exact", "loss__label_smoothing": 0.1}, "label_smoothing must be 0"),
])
def test_bad_task_options_are_user_errors(overrides, match):
  with pytest.raises(UserError, match=match):
    config_checks.validate(_config(**overrides), num_devices=1)


def test_two_image_benchmark_config_is_valid():
  config_checks.validate(two_images.get_config(), num_devices=1)
