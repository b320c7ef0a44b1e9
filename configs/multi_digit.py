"""Multi-digit MNIST addition: two N-digit numbers, each written as N MNIST images (most
significant first), trained on their sum alone.

Each epoch splits the 60,000 training images into 60,000 / 2N examples (every image at
most once; the last incomplete batch is dropped): new examples every epoch by default;
`--config.data.pairing=fixed` keeps the same examples for every epoch, the neuro-symbolic
literature's protocol. The test set is the 10,000 / 2N fixed examples of the test
images. The loss is the negative log of the sum's exact likelihood, a dynamic program
over the carry (adder_jax/long_addition.py), so per-image digit accuracy emerges without
digit labels. For another N, keep batches of up to 120 images, an even number of
examples (experiments/multi_digit.py does).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.task = "multi_digit"
  config.supervision = "sum_only"
  config.model.sum_head = "exact"
  # Without it some seeds learn a wrong digit map (see configs/default.py).
  config.model.zero_init_logits = True
  config.data.num_digits = 4
  # Examples (pairs of numbers) per batch: 112 images at N=4; even, so that a batch
  # splits over two CPU devices (see experiments/multi_digit.py's batch_size).
  config.batch_size = 14
  # Chosen on a validation split at N = 15 under the fixed pairing (4 against 8 epochs:
  # experiments/results/multi_digit_validation.md).
  config.num_epochs = 4
  return config
