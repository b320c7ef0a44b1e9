"""The default network on a 2-epoch schedule: the fastest way to 99.3% test sum accuracy."""

from configs import default


def get_config():
  config = default.get_config()
  config.num_epochs = 2
  return config
