"""`python -m adder_jax.main` on mock MNIST, for tests that run the command line.

    python -m tests.mock_main --mock_num_examples=N FLAGS...

takes exactly the flags of adder_jax.main (plus --mock_num_examples) and runs the same
`main`, inside `conftest.mock_mnist`, which a separate process cannot enter otherwise.
"""

from absl import app
from absl import flags

from adder_jax import main as adder_main
from tests import conftest

_MOCK_NUM_EXAMPLES = flags.DEFINE_integer(
    "mock_num_examples", 256, "Examples in each mock MNIST split.", lower_bound=1)


def main(argv):
  with conftest.mock_mnist(_MOCK_NUM_EXAMPLES.value):
    adder_main.main(argv)


if __name__ == "__main__":
  app.run(main)
