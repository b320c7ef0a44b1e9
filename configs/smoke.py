"""One short epoch of the default setup (about a minute on a 2-core CPU), for smoke tests and CI."""

from configs import default


def get_config():
  config = default.get_config()
  config.num_epochs = 1
  config.batch_size = 64
  config.steps_per_chunk = 50
  return config
