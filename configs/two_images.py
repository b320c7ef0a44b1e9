"""The MNIST-addition benchmark: two images in, their sum out, trained on the sum alone.

The usual protocol: each epoch pairs the 60,000 training images into 30,000 pairs (every
image once); the test set is 5,000 fixed pairs of the 10,000 test images. The exact sum
head makes the digit network's outputs digit probabilities, so per-image digit accuracy
emerges without digit labels.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.task = "two_images"
  config.supervision = "sum_only"
  config.model.sum_head = "exact"
  # Pairs per batch: 100 divides the 30,000 training pairs, so every image is used.
  config.batch_size = 100
  config.num_epochs = 4
  return config
