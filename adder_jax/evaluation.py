"""The model on the test set: its forward pass over every test example (`predict`,
`predict_two_images`, `predict_digits`, pure functions to compile), and, on the host, the
accuracies and loss logged every epoch and the tables and mistakes of a full evaluation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from adder_jax import long_addition
from adder_jax import objectives
from adder_jax import sharding
from adder_jax.constants import NUM_DIGITS


def predict(params, batch_stats, images, numbers, *, model, batch_size, batch_sharding):
  """Logits for every test image, with its fixed number and with all ten numbers.

  Args:
    images: uint8 [N, 28, 28] with N a multiple of batch_size (pad first).
    numbers: int32 [N], the fixed pairing.

  Returns:
    dict of digit_logits [N, 10], sum_logits [N, 19] for the fixed pairing, and
    all_sums [N, 10] the predicted sum for each image with each number 0-9.
  """
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  every_number = jnp.arange(NUM_DIGITS, dtype=jnp.int32)

  def one_batch(_, batch):
    batch_images, batch_numbers = batch
    batch_images = jax.lax.with_sharding_constraint(batch_images, batch_sharding)
    digit_logits = model.apply(variables, batch_images, method=model.digit_logits)
    sum_logits = model.apply(variables, digit_logits, batch_numbers, method=model.sum_logits)
    all_sum_logits = jax.vmap(
        lambda n: model.apply(variables, digit_logits, jnp.full_like(batch_numbers, n),
                              method=model.sum_logits),
        out_axes=1)(every_number)
    out = {"digit_logits": digit_logits, "sum_logits": sum_logits,
           "all_sums": jnp.argmax(all_sum_logits, -1).astype(jnp.int32)}
    return None, out

  n = images.shape[0]
  batches = (images.reshape(n // batch_size, batch_size, *images.shape[1:]),
             numbers.reshape(n // batch_size, batch_size))
  _, out = jax.lax.scan(one_batch, None, batches)
  return jax.tree.map(lambda x: x.reshape(n, *x.shape[2:]), out)


def predict_digits(params, batch_stats, images, *, model, batch_size, batch_sharding):
  """Digit logits for every test image: {'digit_logits': [N, 10]}.

  Args:
    images: uint8 [N, 28, 28] with N a multiple of batch_size (pad first).
  """
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats

  def one_batch(_, batch_images):
    batch_images = jax.lax.with_sharding_constraint(batch_images, batch_sharding)
    return None, model.apply(variables, batch_images, method=model.digit_logits)

  n = images.shape[0]
  _, digit_logits = jax.lax.scan(
      one_batch, None, images.reshape(n // batch_size, batch_size, *images.shape[1:]))
  return {"digit_logits": digit_logits.reshape(n, -1)}


def predict_two_images(params, batch_stats, images, pairs, *, model, batch_size, batch_sharding):
  """Logits for every test image and for the sum of every fixed test pair.

  Args:
    images: uint8 [N, 28, 28] with N a multiple of batch_size (pad first).
    pairs: int32 [P, 2] indices into the (unpadded) images, from
      `pairing.test_image_pairs`.

  Returns:
    dict of digit_logits [N, 10] and sum_logits [P, 19].
  """
  digit_logits = predict_digits(params, batch_stats, images, model=model, batch_size=batch_size,
                                batch_sharding=batch_sharding)["digit_logits"]
  variables = {"params": params}
  sum_logits = model.apply(variables, digit_logits[pairs[:, 0]], digit_logits[pairs[:, 1]],
                           method=model.sum_logits)
  return {"digit_logits": digit_logits, "sum_logits": sum_logits}


class TestPredictor:
  """A task's `predict` on a test split: compiled once, the split resident on the devices."""

  def __init__(self, task, model, test_split, mesh):
    self._predict = jax.jit(
        functools.partial(task.predict, model=model, batch_size=task.config.eval_batch_size,
                          batch_sharding=sharding.batch_sharded(mesh)),
        out_shardings=sharding.replicated(mesh))
    self._inputs = sharding.put_replicated(task.test_inputs(test_split), mesh)

  def compile(self, params, batch_stats):
    """Compiles ahead of time, for abstract (or real) parameters and statistics."""
    self._predict.lower(params, batch_stats, *self._inputs).compile()

  def __call__(self, params, batch_stats):
    """The predictions as numpy arrays, padding included (the task's `test_metrics`
    drops it)."""
    predictions = jax.device_get(self._predict(params, batch_stats, *self._inputs))
    return {k: np.asarray(v) for k, v in predictions.items()}


def _percent(correct):
  # NaN for no examples (a tiny test set may hold no held-out pair).
  return 100.0 * float(np.mean(correct)) if correct.size else float("nan")


def _weighted_loss(digit_logits, labels, sum_logits, sums, loss_config):
  digit_loss = objectives.cross_entropy(digit_logits, labels).mean()
  sum_loss = objectives.cross_entropy(sum_logits, sums).mean()
  return float(jax.device_get(loss_config.digit_weight * digit_loss +
                              loss_config.sum_weight * sum_loss))


def test_metrics(predictions, labels, numbers, loss_config, allowed=None):
  """Accuracies in percent and the weighted test loss.

  Args:
    predictions: numpy outputs of `predict`, padding already removed.
    labels, numbers: int arrays [N], the digits and their fixed numbers.
    allowed: None, or bool [10, 10] of the (digit, number) pairs shown in training
      (`pairing.allowed_pairs`); then the sum accuracies are also reported on
      the held-out pairs ('_heldout') and on the others ('_seen'), for the fixed
      pairing and for all pairs.
  """
  sums = labels + numbers
  every_number = np.arange(predictions["all_sums"].shape[1])
  sum_correct = predictions["sum_logits"].argmax(-1) == sums
  all_pairs_correct = predictions["all_sums"] == labels[:, None] + every_number[None, :]
  metrics = {
      "test_loss": _weighted_loss(predictions["digit_logits"], labels, predictions["sum_logits"],
                                  sums, loss_config),
      "test_digit_accuracy": _percent(predictions["digit_logits"].argmax(-1) == labels),
      "test_sum_accuracy": _percent(sum_correct),
      "test_sum_accuracy_all_pairs": _percent(all_pairs_correct),
  }
  if allowed is not None:
    seen = allowed[labels, numbers]
    seen_all_pairs = allowed[labels]  # [N, 10]: each image with each number.
    metrics.update({
        "test_sum_accuracy_heldout": _percent(sum_correct[~seen]),
        "test_sum_accuracy_seen": _percent(sum_correct[seen]),
        "test_sum_accuracy_all_pairs_heldout": _percent(all_pairs_correct[~seen_all_pairs]),
        "test_sum_accuracy_all_pairs_seen": _percent(all_pairs_correct[seen_all_pairs]),
    })
  return metrics


def two_image_test_metrics(predictions, labels, pairs, loss_config):
  """Accuracies in percent and the weighted test loss of the two-image task.

  Args:
    predictions: numpy outputs of `predict_two_images`, padding already removed.
    labels: int array [N], the digit of every test image.
    pairs: int array [P, 2], the fixed test pairs (`pairing.test_image_pairs`).

  Returns:
    test_sum_accuracy over the pairs, test_digit_accuracy over the images, test_loss.
  """
  sums = labels[pairs].sum(-1)
  return {
      "test_loss": _weighted_loss(predictions["digit_logits"], labels, predictions["sum_logits"],
                                  sums, loss_config),
      "test_digit_accuracy": _percent(predictions["digit_logits"].argmax(-1) == labels),
      "test_sum_accuracy": _percent(predictions["sum_logits"].argmax(-1) == sums),
  }


def number_pair_test_metrics(digit_logits, labels, examples):
  """Accuracies in percent and the test loss of the multi-digit task.

  Args:
    digit_logits: numpy float [M, 10], the logits of every test image.
    labels: int array [M], the digit of every test image.
    examples: int array [P, 2, N], the fixed test examples of two N-digit numbers
      (`pairing.test_number_pairs`).

  Returns:
    test_digit_accuracy over all M images; over the P sums, test_sum_accuracy (the most
    probable digits added), test_sum_accuracy_most_probable (the exact most probable
    sum, `long_addition.most_probable_sums`), test_most_probable_unresolved (sums whose
    search gave up, scored by the added digits) and test_loss (the sum's negative
    log-likelihood, the training loss).
  """
  log_p = np.asarray(jax.nn.log_softmax(digit_logits))[examples]  # [P, 2, N, 10]
  sums = long_addition.add(labels[examples[:, 0]], labels[examples[:, 1]])
  predicted = digit_logits.argmax(-1)[examples]
  added = long_addition.add(predicted[:, 0], predicted[:, 1])
  most_probable, _, found = long_addition.most_probable_sums(log_p[:, 0], log_p[:, 1])
  log_likelihood = long_addition.sum_log_likelihood(log_p[:, 0], log_p[:, 1], sums)
  return {
      "test_loss": -float(np.mean(log_likelihood)),
      "test_digit_accuracy": _percent(digit_logits.argmax(-1) == labels),
      "test_sum_accuracy": _percent(np.all(added == sums, -1)),
      "test_sum_accuracy_most_probable": _percent(np.all(most_probable == sums, -1)),
      "test_most_probable_unresolved": int(np.sum(~found)),
  }


def sum_accuracy_table(all_sums, labels):
  """Sum accuracy in percent for every (digit, number) pair, from all pairs.

  Args:
    all_sums: int [N, 10], the predicted sum of each image with each number 0-9.
    labels: int [N], the true digits.

  Returns:
    float [10, 10]: row d, column n is the accuracy of d + n over the images of d
    (NaN for a digit with no images).
  """
  num_digits = all_sums.shape[1]
  correct = all_sums == labels[:, None] + np.arange(num_digits)[None, :]
  table = np.full((num_digits, num_digits), np.nan)
  for digit in range(num_digits):
    if np.any(labels == digit):
      table[digit] = 100.0 * correct[labels == digit].mean(axis=0)
  return table


def confusion_matrix(labels, predicted, num_classes=10):
  """int [num_classes, num_classes]: row = true class, column = predicted class."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (labels, predicted), 1)
  return matrix


def worst_mistakes(predictions, labels, numbers, count):
  """The test examples with a wrong digit or sum, most confidently wrong first.

  Returns:
    A list of up to `count` dicts: the example's index, digit, number and sum, and the
    predicted digit and sum with the probability the model gave each.
  """
  digit_p = np.asarray(jax.nn.softmax(predictions["digit_logits"]))
  sum_p = np.asarray(jax.nn.softmax(predictions["sum_logits"]))
  sums = labels + numbers
  predicted_digits, predicted_sums = digit_p.argmax(-1), sum_p.argmax(-1)
  wrong = np.nonzero((predicted_digits != labels) | (predicted_sums != sums))[0]
  # The loss of an example ranks how confidently wrong it is.
  rows = np.arange(len(labels))
  loss = -np.log(digit_p[rows, labels] + 1e-12) - np.log(sum_p[rows, sums] + 1e-12)
  worst = wrong[np.argsort(-loss[wrong], kind="stable")][:count]
  return [{
      "index": int(i),
      "digit": int(labels[i]),
      "number": int(numbers[i]),
      "sum": int(sums[i]),
      "predicted_digit": int(predicted_digits[i]),
      "predicted_digit_probability": float(digit_p[i, predicted_digits[i]]),
      "predicted_sum": int(predicted_sums[i]),
      "predicted_sum_probability": float(sum_p[i, predicted_sums[i]]),
  } for i in worst]
