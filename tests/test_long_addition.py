"""The exact likelihood of a multi-digit sum (the carry program), its most probable
value, and exact addition of digit arrays, against brute-force enumeration and Python
integers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adder_jax import long_addition
from adder_jax import models
from adder_jax.models import LOG_ZERO
from conftest import to_digits, to_int


def _random_log_probs(rng, num_digits, scale=2.0):
  """log-softmax of random logits: float [2, N, 10], the digits of two numbers."""
  return np.asarray(jax.nn.log_softmax(scale * rng.normal(size=(2, num_digits, 10))))


def _number_probabilities(p):
  """p(number = n) for n in 0 .. 10^N - 1 from digit probabilities [N, 10]."""
  probabilities = np.ones(1)
  for digit in p:  # Most significant first: each step appends a digit on the right.
    probabilities = np.outer(probabilities, digit).ravel()
  return probabilities


def _brute_force_sum_probabilities(log_p):
  """p(sum = s) for every s in 0 .. 2 (10^N - 1), by enumerating all 10^(2N) pairs."""
  p = np.exp(log_p.astype(np.float64))
  first, second = _number_probabilities(p[0]), _number_probabilities(p[1])
  n = len(first)
  sums = np.add.outer(np.arange(n), np.arange(n))
  return np.bincount(sums.ravel(), weights=np.outer(first, second).ravel())


def _all_sum_digits(num_digits):
  count = 2 * (10 ** num_digits - 1) + 1
  return np.stack([to_digits(s, num_digits + 1) for s in range(count)])


@pytest.mark.parametrize("num_digits", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_likelihood_equals_brute_force_enumeration(num_digits, seed):
  log_p = _random_log_probs(np.random.default_rng(seed), num_digits)
  expected = np.log(_brute_force_sum_probabilities(log_p))
  got = long_addition.sum_log_likelihood(log_p[0], log_p[1], _all_sum_digits(num_digits))
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)


@pytest.mark.parametrize("num_digits", [1, 2])
def test_likelihood_sums_to_one_over_all_sums(num_digits):
  log_p = _random_log_probs(np.random.default_rng(2), num_digits, scale=0.5)
  got = long_addition.sum_log_likelihood(log_p[0], log_p[1], _all_sum_digits(num_digits))
  np.testing.assert_allclose(float(jnp.exp(got).sum()), 1.0, atol=1e-5)


def test_one_digit_likelihood_equals_the_exact_head():
  log_p = _random_log_probs(np.random.default_rng(3), 1)
  head = models.exact_sum_log_probs(log_p[0, 0], log_p[1, 0])  # [19]
  got = long_addition.sum_log_likelihood(log_p[0], log_p[1], _all_sum_digits(1))
  np.testing.assert_allclose(np.asarray(got), np.asarray(head), atol=1e-6)


@pytest.mark.slow
def test_near_one_hot_inputs_give_finite_loss_and_gradients():
  # Digits 3,7,9 and 8,5,2 certain (log-probabilities 0 and -1e4): 379 + 852 = 1231.
  def one_hot_log_probs(digits):
    return jnp.where(jax.nn.one_hot(jnp.array(digits), 10) > 0, 0.0, LOG_ZERO)

  first, second = one_hot_log_probs([3, 7, 9]), one_hot_log_probs([8, 5, 2])

  def loss(first, second, total):
    return -long_addition.sum_log_likelihood(first, second, to_digits(total, 4))

  for total in (1231, 1232, 0, 1998):  # The sum the digits make, and impossible ones.
    value, grads = jax.value_and_grad(loss, argnums=(0, 1))(first, second, total)
    assert np.isfinite(float(value)), total
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads), total
  assert float(loss(first, second, 1231)) == pytest.approx(0.0, abs=1e-6)
  assert float(loss(first, second, 1232)) > 1e3


@pytest.mark.parametrize("num_digits", [1, 2, 3])
@pytest.mark.parametrize("scale", [0.3, 2.0, 8.0])
def test_most_probable_sum_is_the_brute_force_maximum(num_digits, scale):
  rng = np.random.default_rng(num_digits)
  for _ in range(5):
    log_p = _random_log_probs(rng, num_digits, scale)
    probabilities = _brute_force_sum_probabilities(log_p)
    digits, log_probability, certain = (
        x[0] for x in long_addition.most_probable_sums(log_p[None, 0], log_p[None, 1],
                                                       max_visits=100_000))
    assert certain
    assert to_int(digits) == probabilities.argmax()
    assert log_probability == pytest.approx(np.log(probabilities.max()), abs=1e-5)


def test_most_probable_sum_differs_from_the_added_most_probable_digits():
  # Units digits: first 1 (0.6) or 9 (0.4), second 0 (0.55) or 8 (0.45); tens 0 for both.
  # Most probable digits: 01 + 00 = 1 (p 0.33); but 9 + 0, 1 + 8 and 9 + 8 give
  # 9 (p 0.22 + 0.27 = 0.49), 17 (0.18).
  units_first = np.log(np.array([0, 0.6, 0, 0, 0, 0, 0, 0, 0, 0.4]) + 1e-30)
  units_second = np.log(np.array([0.55, 0, 0, 0, 0, 0, 0, 0, 0.45, 0]) + 1e-30)
  tens = np.log(np.eye(10)[0] + 1e-30)
  first, second = np.stack([tens, units_first]), np.stack([tens, units_second])
  digits, log_probability, certain = (
      x[0] for x in long_addition.most_probable_sums(first[None], second[None]))
  assert certain and to_int(digits) == 9
  assert np.exp(log_probability) == pytest.approx(0.49, abs=1e-5)
  added = long_addition.add(first.argmax(-1), second.argmax(-1))
  assert to_int(added) == 1


def test_most_probable_sum_gives_up_after_max_visits():
  # Pair 0 uniform digits (no sum stands out early), pair 1 certain digits.
  log_p = np.full((2, 2, 6, 10), np.log(0.1))
  log_p[1] = np.log(np.eye(10)[[[1, 2, 3, 4, 5, 6], [9, 9, 9, 9, 9, 9]]] + 1e-30)
  digits, log_probability, certain = long_addition.most_probable_sums(
      log_p[:, 0], log_p[:, 1], max_visits=20)
  assert certain.tolist() == [False, True]
  assert np.isnan(log_probability[0]) and log_probability[1] == pytest.approx(0, abs=1e-6)
  assert to_int(digits[1]) == 123456 + 999999
  # Given up: the most probable digits added.
  added = long_addition.add(log_p[0, 0].argmax(-1), log_p[0, 1].argmax(-1))
  np.testing.assert_array_equal(digits[0], added)


def test_addition_of_fifteen_digit_numbers_is_exact():
  rng = np.random.default_rng(4)
  first, second = rng.integers(0, 10, (2, 100, 15))
  for xp in (np, jnp):
    total = np.asarray(long_addition.add(xp.asarray(first), xp.asarray(second)))
    assert total.shape == (100, 16)
    for a, b, s in zip(first, second, total):
      assert to_int(s) == to_int(a) + to_int(b)
  nines = np.full(15, 9)
  assert to_int(long_addition.add(nines, nines)) == 2 * (10 ** 15 - 1)


@pytest.mark.parametrize("xp", [np, jnp])
def test_carries_run_through_nines(xp):
  """A carry crosses every position whose digits add to 9, at N = 100 too."""
  rng = np.random.default_rng(5)
  first = rng.integers(0, 10, (50, 100))
  first[:, -1] = rng.integers(1, 10, 50)
  second = 9 - first  # Every position adds to 9: no carry anywhere ...
  second[:25, -1] += 1  # ... but in the first 25 one enters above the lowest digit,
  first[:5, 50] = second[:5, 50] = 0  # and in 5 of those stops halfway.
  total = np.asarray(long_addition.add(xp.asarray(first), xp.asarray(second)))
  for a, b, s in zip(first, second, total):
    assert to_int(s) == to_int(a) + to_int(b)
  assert total[5:25, 0].all() and not total[25:, 0].any()
