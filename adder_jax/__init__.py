"""adder_jax: an MNIST digit plus a random number, read and added by one JAX/Flax network."""

__version__ = "0.1.0"
