"""The sizes that define the task, shared by the data, the network and its users."""

NUM_DIGITS = 10  # Digits 0-9, and numbers 0-9 to add to them.
NUM_SUMS = 2 * NUM_DIGITS - 1  # Sums 0-18.
IMAGE_SHAPE = (28, 28)  # MNIST images, uint8, white digit on black.
