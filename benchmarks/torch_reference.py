"""The PyTorch peer: this task as it is usually written in eager PyTorch.

The classic 220,125-parameter network (seven 3x3 convolutions, the digit logits
concatenated with the one-hot number, dense 128, dense 19 sums; the network of
configs/reference_cnn.py), a Dataset that pairs each image with a fresh random number
every time it is read, a shuffling DataLoader, Adam 1e-3, batch 256, the loss the mean of
the two cross-entropies, and the test accuracy after every epoch (or more often) on the
fixed pairing adder_jax evaluates on. It reads MNIST through adder_jax's loader, so both train on the
same bytes. `benchmarks/benchmark.py --peer` runs it after adder_jax; on its own:

  python -m benchmarks.torch_reference --manual_dir ~/mnist_raw --data_dir /tmp/tfds

Needs PyTorch: `pip install -e ".[bench]"`.
"""

import argparse
import itertools
import json
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from torch.utils.data import Dataset

from adder_jax import cli
from adder_jax import mnist
from adder_jax import pairing
from configs import default

# The usual normalisation of MNIST pixels (the training set's mean and deviation).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class ImagePlusNumber(Dataset):
  """MNIST images, each read with a number 0-9 and the sum: a fresh random number every
  time (training), or the fixed `numbers` given (testing)."""

  def __init__(self, images, labels, numbers=None):
    pixels = torch.from_numpy(images).float().div(255).unsqueeze(1)
    self.images = (pixels - MNIST_MEAN) / MNIST_STD
    self.labels = torch.from_numpy(labels).long()
    self.numbers = None if numbers is None else torch.from_numpy(numbers).long()

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    number = torch.randint(0, 10, ()) if self.numbers is None else self.numbers[i]
    return self.images[i], F.one_hot(number, 10).float(), self.labels[i], self.labels[i] + number


class ReferenceNet(nn.Module):
  """32-64-pool-64-64-pool-64-128-10 convolutions to the digit logits; their concatenation
  with the one-hot number through dense 128 to the 19 sum logits."""

  def __init__(self):
    super().__init__()
    self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
    self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
    self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
    self.conv4 = nn.Conv2d(64, 64, 3, padding=1)
    self.conv5 = nn.Conv2d(64, 64, 3)
    self.conv6 = nn.Conv2d(64, 128, 3)
    self.conv7 = nn.Conv2d(128, 10, 3)
    self.fc1 = nn.Linear(10 + 10, 128)
    self.fc2 = nn.Linear(128, 19)

  def forward(self, image, one_hot_number):
    x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(image)))), 2)
    x = F.max_pool2d(F.relu(self.conv4(F.relu(self.conv3(x)))), 2)
    x = F.relu(self.conv6(F.relu(self.conv5(x))))
    digit_logits = self.conv7(x).flatten(1)
    sum_logits = self.fc2(F.relu(self.fc1(torch.cat([digit_logits, one_hot_number], 1))))
    return digit_logits, sum_logits


def evaluate(model, loader):
  """Test digit and sum accuracy, in percent."""
  model.eval()
  digits_right = sums_right = count = 0
  with torch.no_grad():
    for image, one_hot_number, digit, total in loader:
      digit_logits, sum_logits = model(image, one_hot_number)
      digits_right += (digit_logits.argmax(1) == digit).sum().item()
      sums_right += (sum_logits.argmax(1) == total).sum().item()
      count += len(digit)
  return 100.0 * digits_right / count, 100.0 * sums_right / count


def train_and_evaluate(train_split, test_split, epochs=5, batch_size=256, learning_rate=1e-3,
                       evals_per_epoch=1, max_steps_per_epoch=0, seed=0, log=print):
  """Trains a ReferenceNet on `train_split`, testing it `evals_per_epoch` times an epoch.

  Args:
    train_split, test_split: `mnist.Split`s (uint8 images, int labels).
    epochs: passes over the training images.
    batch_size: training images per step.
    learning_rate: Adam's.
    evals_per_epoch: test evaluations per epoch, evenly spaced in steps (their time is
      not training time).
    max_steps_per_epoch: if > 0, an epoch stops after this many steps (to time a few).
    seed: torch's seed (initialisation, shuffling, the training numbers).
    log: called with each evaluation's record.

  Returns:
    One record per evaluation: epoch, step, epochs (fractional), train_seconds (since
    the previous record), cumulative_train_seconds, images_per_second and train_loss
    (of the steps since the previous record), test_digit_accuracy and
    test_sum_accuracy (percent).
  """
  torch.manual_seed(seed)
  train_loader = DataLoader(ImagePlusNumber(train_split.images, train_split.labels),
                            batch_size=batch_size, shuffle=True)
  test_numbers = pairing.test_numbers(len(test_split))
  test_loader = DataLoader(ImagePlusNumber(test_split.images, test_split.labels, test_numbers),
                           batch_size=1000)
  model = ReferenceNet()
  optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
  steps_per_epoch = len(train_loader)
  if max_steps_per_epoch:
    steps_per_epoch = min(steps_per_epoch, max_steps_per_epoch)
  every = max(1, steps_per_epoch // evals_per_epoch)
  history, total_seconds, step = [], 0.0, 0
  for epoch in range(1, epochs + 1):
    model.train()
    start, images, loss_sum = time.perf_counter(), 0, 0.0
    batches = itertools.islice(train_loader, steps_per_epoch)
    for i, (image, one_hot_number, digit, total) in enumerate(batches, 1):
      digit_logits, sum_logits = model(image, one_hot_number)
      loss = (F.cross_entropy(digit_logits, digit) + F.cross_entropy(sum_logits, total)) / 2
      optimizer.zero_grad()
      loss.backward()
      optimizer.step()
      step += 1
      images += len(digit)
      loss_sum += loss.item() * len(digit)
      if i % every and i != steps_per_epoch:
        continue
      seconds = time.perf_counter() - start
      total_seconds += seconds
      digit_accuracy, sum_accuracy = evaluate(model, test_loader)
      history.append({"epoch": epoch, "step": step, "epochs": round(step / steps_per_epoch, 3),
                      "train_seconds": round(seconds, 3),
                      "cumulative_train_seconds": round(total_seconds, 3),
                      "images_per_second": round(images / seconds, 1),
                      "train_loss": loss_sum / images, "test_digit_accuracy": digit_accuracy,
                      "test_sum_accuracy": sum_accuracy})
      log(history[-1])
      model.train()
      start, images, loss_sum = time.perf_counter(), 0, 0.0
  return history


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", help="tfds data_dir (default: tfds's, ~/tensorflow_datasets)")
  parser.add_argument("--manual_dir", help="folder of the four MNIST IDX .gz files (offline)")
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--threads", type=int, default=0,
                      help="torch.set_num_threads (default: torch's own choice)")
  args = parser.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  with cli.exit_on_user_error():
    data_config = default.get_config().data
    data_config.data_dir, data_config.manual_dir = args.data_dir, args.manual_dir
    data = mnist.load(data_config)
  train_and_evaluate(data["train"], data["test"], args.epochs, args.batch_size,
                     log=lambda record: print(json.dumps(record), flush=True))


if __name__ == "__main__":
  main()
