"""Which images a task's examples are made of, and the gathering of training batches.

Pairing images with random numbers (`epoch_plan`), with each other for the two-image
task (`two_image_epoch_plan`) or into two N-digit numbers (`number_pair_epoch_plan`),
and gathering each batch (`gather_batch`, `gather_two_image_batch`,
`gather_number_pair_batch`) are done on the accelerator, inside the compiled training
loop. The test sets are paired once, from fixed seeds (`test_numbers`,
`test_image_pairs`, `test_number_pairs`).

With several processes (see distributed.py) every process holds the whole dataset
(MNIST is small), and the plan is drawn from the seed alone, so it is the same in every
process and for any number of devices: a run pairs the same images with the same
numbers whatever its layout. Each global batch is then gathered on the devices (in
`steps.train_chunk`) by indices split over the 'data' axis, so each process's devices,
and so each process, materialise only their own share of every global batch, the rows
that `jax.make_array_from_process_local_data` would take from that process if it built
the batch on the host.
"""

import jax
import jax.numpy as jnp
import numpy as np

from adder_jax import long_addition
from adder_jax.constants import NUM_DIGITS

# The test set is paired with numbers from this seed whatever `config.seed` is, so that
# test accuracies of different runs are measured on the same pairs. It is also the
# pairing that the usual PyTorch versions of this task evaluate on.
TEST_PAIRING_SEED = 0

# Mixed with `config.seed` to draw a count of held-out pairs (see `allowed_pairs`).
HOLDOUT_SEED_SALT = 0x5EED

# How the two_images and multi_digit tasks form their training examples
# (`config.data.pairing`): 'fresh', a new split of a permutation of the training images
# every epoch; 'fixed', the literature's protocol: the examples are formed once, from a
# permutation of TRAIN_PAIRING_SEED (whatever `config.seed` is), and kept for every
# epoch, which only shuffles their order.
PAIRINGS = ("fresh", "fixed")
TRAIN_PAIRING_SEED = 0


def test_numbers(num_examples):
  """The fixed numbers paired with the test images (same for every run)."""
  rng = np.random.default_rng(TEST_PAIRING_SEED)
  return rng.integers(0, NUM_DIGITS, num_examples).astype(np.int32)


def allowed_pairs(holdout_pairs, seed):
  """The (digit, number) pairs that training may show, from `config.data.holdout_pairs`.

  Args:
    holdout_pairs: '' (nothing held out), a list such as '3+4,7+2' (digit 3 with
      number 4, digit 7 with number 2), or a count such as '10': that many pairs drawn
      from `seed`, never all ten numbers of one digit.
    seed: `config.seed`.

  Returns:
    None when nothing is held out, else bool [10, 10]: allowed[digit, number].

  Raises:
    ValueError: a malformed spec, or one that holds out every number of a digit.
  """
  spec = holdout_pairs.strip()
  if not spec:
    return None
  allowed = np.ones((NUM_DIGITS, NUM_DIGITS), bool)
  if spec.isdigit():
    count = int(spec)
    most = NUM_DIGITS * (NUM_DIGITS - 1)
    if count > most:
      raise ValueError(f"a count of held-out pairs must be at most {most} (every digit keeps a "
                       f"number), got {count}")
    # Its own stream of the seed, so the choice does not shift any other random draw.
    rng = np.random.default_rng([HOLDOUT_SEED_SALT, seed])
    for flat in rng.permutation(NUM_DIGITS * NUM_DIGITS):
      if (~allowed).sum() == count:
        break
      digit, number = divmod(int(flat), NUM_DIGITS)
      if allowed[digit].sum() > 1:
        allowed[digit, number] = False
  else:
    for token in spec.split(","):
      parts = [p.strip() for p in token.split("+")]
      if len(parts) != 2 or not all(p.isdigit() and int(p) < NUM_DIGITS for p in parts):
        raise ValueError(f"bad pair {token.strip()!r} in {holdout_pairs!r}: write DIGIT+NUMBER "
                         "with both in 0-9, e.g. '3+4,7+2', or a count such as '10'")
      digit, number = int(parts[0]), int(parts[1])
      if not allowed[digit, number]:
        raise ValueError(f"pair {digit}+{number} is listed twice in {holdout_pairs!r}")
      allowed[digit, number] = False
    bare = [d for d in range(NUM_DIGITS) if not allowed[d].any()]
    if bare:
      raise ValueError(f"{holdout_pairs!r} holds out every number of digit {bare[0]}, whose "
                       "images could then never be trained on")
  return allowed if not allowed.all() else None


def epoch_plan(key, epoch, labels, batch_size, allowed=None):
  """Order and pairing of one training epoch, drawn on the device.

  Args:
    key: the data PRNG key of the run (derived from `config.seed`).
    epoch: epoch index (0-based), traced or static.
    labels: int32 [num_examples], the digit of each training image.
    batch_size: global batch size.
    allowed: None, or bool [10, 10] from `allowed_pairs`: an image of digit d is never
      paired with a number n where allowed[d, n] is False.

  Returns:
    dict of 'batch_indices': int32 [steps, batch_size] indices into the training set,
    the last incomplete batch dropped; and 'numbers': int32 [num_examples] the number
    paired with each training image in this epoch, fresh every epoch.
  """
  num_examples = labels.shape[0]
  order_key, number_key = jax.random.split(jax.random.fold_in(key, epoch))
  steps = num_examples // batch_size
  order = jax.random.permutation(order_key, num_examples)[: steps * batch_size]
  numbers = jax.random.randint(number_key, (num_examples,), 0, NUM_DIGITS, jnp.int32)
  if allowed is not None:
    # A held-out pair gets a fresh number, uniform among those its digit may meet, so
    # every allowed number of a digit stays equally likely.
    allowed_here = jnp.asarray(allowed)[labels]
    redrawn = jax.random.categorical(jax.random.fold_in(number_key, 1),
                                     jnp.where(allowed_here, 0.0, -jnp.inf)).astype(jnp.int32)
    numbers = jnp.where(allowed_here[jnp.arange(num_examples), numbers], numbers, redrawn)
  return {"batch_indices": order.reshape(steps, batch_size).astype(jnp.int32), "numbers": numbers}


def two_image_epoch_plan(key, epoch, num_images, batch_size, pairing="fresh"):
  """The pairs of images of one epoch of the two-image task, drawn on the device.

  Every image appears at most once (num_images // 2 pairs; the last incomplete batch is
  dropped); `pairing` (one of PAIRINGS) says whether the pairs are new every epoch.

  Returns:
    dict of 'batch_indices': int32 [steps, batch_size, 2], the two images of each pair.
  """
  # Pairs of one-digit numbers.
  plan = number_pair_epoch_plan(key, epoch, num_images, batch_size, 1, pairing)
  return {"batch_indices": plan["batch_indices"][..., 0]}


def gather_batch(train_images, train_labels, plan, indices):
  """The training batch at `indices` with the numbers of `epoch_plan`."""
  labels = train_labels[indices]
  numbers = plan["numbers"][indices]
  return {"inputs": {"images": train_images[indices], "numbers": numbers},
          "label": labels, "sum": labels + numbers}


def gather_two_image_batch(train_images, train_labels, plan, indices):
  """The two-image batch at `indices` [B, 2] of `two_image_epoch_plan`."""
  del plan  # The pairs are the indices themselves.
  labels = train_labels[indices]
  return {"inputs": {"images": train_images[indices]}, "label": labels, "sum": labels.sum(-1)}


def number_pair_epoch_plan(key, epoch, num_images, batch_size, num_digits, pairing="fresh"):
  """The examples of one epoch of the multi-digit task, drawn on the device.

  An example is two numbers of `num_digits` images each; every image appears at most
  once (num_images // (2 * num_digits) examples; the last incomplete batch is dropped).
  With `pairing` 'fresh' each epoch splits a new permutation of the training images into
  examples; with 'fixed' the examples are those of the permutation of TRAIN_PAIRING_SEED,
  the same in every run and epoch, in a new order each epoch.

  Returns:
    dict of 'batch_indices': int32 [steps, batch_size, 2, num_digits], the images of
    each digit of both numbers, most significant first.
  """
  size = 2 * num_digits
  examples = num_images // size
  steps = examples // batch_size
  epoch_key = jax.random.fold_in(key, epoch)
  if pairing == "fresh":
    order = jax.random.permutation(epoch_key, num_images)[: examples * size]
    chosen = order.reshape(examples, 2, num_digits)[: steps * batch_size]
  else:
    fixed = jax.random.permutation(jax.random.key(TRAIN_PAIRING_SEED), num_images)
    fixed = fixed[: examples * size].reshape(examples, 2, num_digits)
    chosen = fixed[jax.random.permutation(epoch_key, examples)[: steps * batch_size]]
  return {"batch_indices": chosen.reshape(steps, batch_size, 2, num_digits).astype(jnp.int32)}


def gather_number_pair_batch(train_images, train_labels, plan, indices):
  """The multi-digit batch at `indices` [B, 2, N] of `number_pair_epoch_plan`: 'sum' is
  the sum's N + 1 digits, most significant first (`long_addition.add`)."""
  del plan  # The numbers are the indices themselves.
  labels = train_labels[indices]
  return {"inputs": {"images": train_images[indices]}, "label": labels,
          "sum": long_addition.add(labels[:, 0], labels[:, 1])}


def test_number_pairs(num_images, num_digits):
  """The fixed examples of the multi-digit test set: int32 [num_images // (2 N), 2, N],
  the images of each digit of both numbers, from a fixed permutation (as `test_numbers`):
  every run is tested on the same examples, each test image in at most one of them."""
  order = np.random.default_rng(TEST_PAIRING_SEED).permutation(num_images)
  size = 2 * num_digits
  return order[: num_images // size * size].reshape(-1, 2, num_digits).astype(np.int32)


def test_image_pairs(num_images):
  """The fixed pairs of test images of the two-image task: int32 [num_images // 2, 2].

  A permutation from a fixed seed (as `test_numbers`), so every run is tested on the
  same pairs, each test image in one of them: 5,000 pairs of the 10,000 MNIST test images.
  """
  return test_number_pairs(num_images, num_digits=1)[..., 0]
