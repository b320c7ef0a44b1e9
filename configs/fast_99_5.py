"""configs/fast.py on a 4-epoch schedule: the least training time found to a mean final
test sum accuracy of 99.5% over 5 seeds (benchmarks/README.md).

Settings chosen on a validation split of 10,000 training images (experiments/tune_speed.py);
the test set decided only the schedule's length, as the benchmark's rule defines
time-to-target.
"""

from configs import fast


def get_config():
  config = fast.get_config()
  config.num_epochs = 4
  return config
