"""Adding two N-digit numbers whose digits are distributions: the exact likelihood of a
sum, its most probable value, and exact integer addition of digit arrays.

Numbers are digit arrays, most significant digit first: two N-digit operands and an
(N + 1)-digit sum, whose first digit is the final carry (0 or 1). Sums of two 15-digit
numbers reach 2 x (10^15 - 1), past int32, so they are never held as one integer.

The sum factorises over positions through the carry. At position i (from the least
significant) the digits add to t = a_i + b_i, with distribution P_i(t) over 0-18
(`models.exact_sum_log_probs`); with carry c in, the sum digit is s_i = (t + c) mod 10
and the carry out c' = (t + c) div 10, so t = s_i + 10 c' - c. Hence, with alpha_0 =
(1, 0) over the carry into the lowest position,

    alpha_{i+1}(c') = sum over c of alpha_i(c) P_i(s_i + 10 c' - c),
    p(sum) = alpha_N(s_N),

a dynamic program over N positions of two carry states: O(N x 100) work, where
enumerating digit combinations costs 10^(2N).
"""

import heapq

import jax
import jax.numpy as jnp
import numpy as np

from adder_jax.constants import NUM_DIGITS, NUM_SUMS
from adder_jax.models import LOG_ZERO, exact_sum_log_probs

_CARRIES = np.arange(2)


def _padded(log_p_positions):
  """[..., 19] -> [..., 21] with LOG_ZERO at both ends, so that index t + 1 holds
  log P(t) for t in -1..19 (t = -1 and t = 19 are impossible)."""
  widths = [(0, 0)] * (log_p_positions.ndim - 1) + [(1, 1)]
  return jnp.pad(log_p_positions, widths, constant_values=LOG_ZERO)


def sum_log_likelihood(log_p_first, log_p_second, sum_digits):
  """log p(first + second = sum) for independent digits, by the carry program above.

  Args:
    log_p_first, log_p_second: float [..., N, 10], log-probabilities of the digits of
      the two numbers, most significant first.
    sum_digits: int [..., N + 1], the sum's digits, most significant (the carry) first.

  Returns:
    float [...]: the log-probability of the sum. Differentiable, finite for near
    one-hot inputs: every step is a logsumexp, and picks are one-hot products, not
    gathers (whose scatter gradient is slow on XLA:CPU).
  """
  padded = _padded(exact_sum_log_probs(log_p_first, log_p_second))  # [..., N, 21]
  digits = sum_digits[..., 1:]
  # pick[..., i, c, c'] = log P_i(s_i + 10 c' - c), index shifted by one for the padding.
  t = digits[..., None, None] + 10 * _CARRIES[None, :] - _CARRIES[:, None] + 1
  pick = jnp.sum(jax.nn.one_hot(t, NUM_SUMS + 2) * padded[..., None, None, :], -1)
  # No carry enters the lowest position: alpha_1 is its row for c = 0.
  log_alpha = pick[..., -1, 0, :]
  for i in reversed(range(pick.shape[-3] - 1)):
    log_alpha = jax.nn.logsumexp(log_alpha[..., :, None] + pick[..., i, :, :], axis=-2)
  return jnp.sum(jax.nn.one_hot(sum_digits[..., 0], 2) * log_alpha, -1)


def add(first, second):
  """Exact integer addition of digit arrays: int [..., N] + int [..., N] -> int [..., N + 1],
  most significant first. Works on numpy and JAX arrays (in a traced function too).

  Without a loop over positions (an unrolled one takes XLA a minute to compile at
  N = 100): a position's carry out is 1 if its digits add to 10 or more, 0 if to 8 or
  less, and its carry in if to 9; so it is set by the nearest position at or below it
  whose digits do not add to 9, and is 0 if there is none.
  """
  xp = jnp if isinstance(first, jax.Array) or isinstance(second, jax.Array) else np
  totals = (first + second)[..., ::-1]  # Least significant first.
  positions = xp.arange(totals.shape[-1])
  deciding = xp.maximum.accumulate(xp.where(totals != NUM_DIGITS - 1, positions, -1), axis=-1)
  decided = xp.take_along_axis(totals, xp.maximum(deciding, 0), axis=-1) >= NUM_DIGITS
  carry_out = (decided & (deciding >= 0)).astype(totals.dtype)
  carry_in = xp.concatenate([xp.zeros_like(carry_out[..., :1]), carry_out[..., :-1]], -1)
  digits = (totals + carry_in) % NUM_DIGITS
  return xp.concatenate([carry_out[..., -1:], digits[..., ::-1]], -1)


def most_probable_sums(log_p_first, log_p_second, max_visits=500):
  """The exact most probable sum of each pair of N-digit numbers, by best-first search.

  The search grows a sum's digits from the least significant. A prefix's carry message
  alpha (see the module docstring) sums, over both carries, to the total probability of
  every sum that ends in that prefix, which bounds the probability of each of them: so
  the first complete sum taken from the queue, ordered by that bound, is a most probable
  one. A confident network leaves almost one path to follow.

  Args:
    log_p_first, log_p_second: float [P, N, 10], the digits' log-probabilities of P
      pairs of numbers, most significant first.
    max_visits: prefixes taken from the queue of one pair before giving up, beyond
      the N + 2 that a sum needs at the least.

  Returns:
    int32 [P, N + 1] the sums' digits, float [P] their log-probabilities, and bool [P]
    whether each is certainly the most probable. Where the search gave up: the sum of
    the most probable digits, NaN and False.
  """
  padded = np.asarray(_padded(exact_sum_log_probs(jnp.asarray(log_p_first),
                                                  jnp.asarray(log_p_second))), np.float64)
  num_digits = padded.shape[-2]
  searched = [_search(positions[::-1], max_visits + num_digits + 2) for positions in padded]
  added = add(np.asarray(log_p_first).argmax(-1), np.asarray(log_p_second).argmax(-1))
  found = np.array([digits is not None for digits, _ in searched])
  digits = np.stack([d if d is not None else a for (d, _), a in zip(searched, added)])
  log_probabilities = np.array([lp for _, lp in searched])
  return digits.astype(np.int32), log_probabilities, found


def _search(padded, max_visits):
  """(digits, log-probability) of the most probable sum, or (None, NaN) after
  `max_visits`; `padded` [N, 21] as `_padded`, least significant position first."""
  num_digits = padded.shape[0]
  sum_digit = np.arange(NUM_DIGITS)[:, None]
  # Index t + 1 of P for each next sum digit s [10] and carry out c' [2], carry in 0 or 1.
  from_no_carry = sum_digit + 10 * _CARRIES[None, :] + 1
  from_carry = from_no_carry - 1
  queue = [(-0.0, 0, (), (0.0, float(LOG_ZERO)))]
  count = 1
  for _ in range(max_visits):
    neg_bound, _, prefix, log_alpha = heapq.heappop(queue)
    position = len(prefix)
    if position == num_digits + 1:
      return np.array(prefix[::-1]), -neg_bound
    if position == num_digits:  # The last digit of the sum is the final carry.
      children = [(c, log_alpha[c], None) for c in _CARRIES]
    else:
      p = padded[position]
      alphas = np.logaddexp(log_alpha[0] + p[from_no_carry], log_alpha[1] + p[from_carry])
      bounds = np.logaddexp(alphas[:, 0], alphas[:, 1])
      children = [(s, bounds[s], (alphas[s, 0], alphas[s, 1])) for s in range(NUM_DIGITS)]
    for digit, bound, alpha in children:
      heapq.heappush(queue, (-float(bound), count, prefix + (int(digit),), alpha))
      count += 1
  return None, float("nan")
