"""The most accurate single network: the default network trained longer on randomly
rotated, scaled and shifted images, evaluated with moving averages of its weights.

Settings chosen on a validation split of 5,000 training images (see
experiments/README.md, "The best config"); the test set played no part.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.num_epochs = 20
  config.augment.max_rotation = 10.0
  config.augment.max_scale = 0.1
  config.augment.max_shift = 2.0
  config.ema_decay = 0.999
  return config
