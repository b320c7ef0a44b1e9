"""Default hyperparameters: MNIST digit + number, trained to >= 99.3% in 5 epochs."""

import ml_collections
from ml_collections import config_dict


def get_config():
  config = ml_collections.ConfigDict()
  # Seeds initialisation, shuffling and the training pairing (not the test pairing).
  config.seed = 0
  # Passes over the 60,000 training images.
  config.num_epochs = 5
  # Global batch size, split over all devices (must divide by the device count).
  config.batch_size = 128
  # Test images per evaluation batch (must divide by the device count).
  config.eval_batch_size = 1000
  # Train steps compiled into one lax.scan; the progress bar updates once per chunk.
  config.steps_per_chunk = 100
  # Gradients of the convolutions, max pools and biases, one of kernels.GRADIENT_KERNELS:
  # 'auto' (formulations that XLA:CPU runs fast on CPU devices, JAX's own elsewhere),
  # 'generic' or 'cpu'. Speed only; what each means and why: adder_jax/kernels.py.
  config.gradient_kernels = "auto"
  # One of tasks.TASKS: 'image_plus_number' (an image and a number 0-9 in; digit and sum
  # out), 'two_images' (two images in, their sum out: MNIST addition; batch_size then
  # counts pairs) or 'multi_digit' (two numbers of data.num_digits images each in, their
  # sum out; batch_size then counts pairs of numbers; see configs/multi_digit.py).
  config.task = "image_plus_number"
  # Targets trained on, one of objectives.SUPERVISIONS: 'both', 'sum_only' or 'digit_only' (the
  # other one's weight in the loss becomes 0; both accuracies are still reported).
  config.supervision = "both"

  config.data = ml_collections.ConfigDict()
  # tfds dataset name.
  config.data.dataset = "mnist"
  # Where tfds keeps prepared data (None: tfds's default, ~/tensorflow_datasets).
  config.data.data_dir = config_dict.placeholder(str)
  # A folder with the four MNIST IDX .gz files, to prepare the data with no network.
  config.data.manual_dir = config_dict.placeholder(str)
  # (digit, number) pairs never shown in training (image_plus_number): '' for none, a
  # list such as '3+4,7+2' (digit+number), or a count such as '10' drawn from the seed.
  # The test metrics then split the sum accuracy into held-out and seen pairs.
  config.data.holdout_pairs = ""
  # Training images set aside as a validation split (drawn from a fixed seed, the same
  # for every run), to choose settings without the test set: each epoch then also reports
  # validation_* accuracies. 0: train on all 60,000.
  config.data.validation_size = 0
  # Digits of each of the two numbers of the multi_digit task (the others ignore it).
  config.data.num_digits = 4
  # How the two_images and multi_digit tasks make training examples of several images,
  # one of pairing.PAIRINGS: 'fresh' (a new pairing of the training images every epoch)
  # or 'fixed' (the neuro-symbolic literature's protocol: examples formed once, from a
  # permutation of a fixed seed independent of config.seed, and kept for every epoch,
  # which shuffles only their order). image_plus_number takes 'fresh' only.
  config.data.pairing = "fresh"

  config.model = ml_collections.ConfigDict()
  # Conv trunk, in the order its layers run (grammar: models.parse_conv_layers); here
  # three conv -> max pool -> BatchNorm -> ReLU blocks.
  config.model.conv_layers = "32M 64M 128M"
  # Height and width of every convolution's kernel.
  config.model.kernel_size = 3
  # Dense layers between the flattened trunk and the 10 digit logits.
  config.model.dense_features = (256,)
  # One of models.SUM_HEADS. 'mlp': dense layers on [digit representation, one-hot
  # number] (or both images' digit representations) to the sum logits; 'exact': p(sum) =
  # sum over d of p(digit = d) p(other = sum - d), no parameters (its log-probabilities
  # are the logits).
  config.model.sum_head = "mlp"
  # Hidden layers of the mlp sum head.
  config.model.sum_hidden_features = (128,)
  # The digit representation the mlp sum head sees, one of models.SUM_HEAD_INPUTS:
  # 'probabilities' (softmax) or 'logits'.
  config.model.sum_head_input = "probabilities"
  # BatchNorm after every conv and hidden dense layer of the digit network.
  config.model.batch_norm = True
  # Dropout after the hidden dense layers of the digit network.
  config.model.dropout_rate = 0.25
  # Compute dtype of the digit network, one of models.DTYPES ('float32' or 'bfloat16');
  # parameters stay float32.
  config.model.dtype = "float32"
  # Start the layer of the 10 digit logits at zero weights, so that every image starts
  # with uniform digit probabilities. Learning digits from multi-digit sums needs it:
  # from random initial weights some seeds settle on a wrong map of the digits
  # (experiments/README.md, "Multi-digit addition").
  config.model.zero_init_logits = False

  config.optimizer = ml_collections.ConfigDict()
  # One of optimizers.OPTIMIZERS: 'adam', 'adamw', 'sgd' (Nesterov momentum b1) or 'lamb'.
  config.optimizer.name = "adamw"
  # Peak learning rate.
  config.optimizer.learning_rate = 3e-3
  # Adam's beta1 (SGD's momentum) and beta2.
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  # Decoupled weight decay (adamw, lamb).
  config.optimizer.weight_decay = 1e-4
  # One of optimizers.SCHEDULES: 'constant', 'warmup_cosine' or 'onecycle'.
  config.optimizer.schedule = "onecycle"
  # Fraction of all steps spent warming up to the peak.
  config.optimizer.warmup_fraction = 0.2
  # onecycle: the schedule starts at learning_rate / this.
  config.optimizer.onecycle_initial_divisor = 25.0
  # The schedule ends at learning_rate * this (warmup_cosine, onecycle).
  config.optimizer.final_lr_fraction = 1e-3

  # Keep exponential moving averages of the parameters and BatchNorm statistics with
  # this decay per step, in [0, 1); evaluation, predict and evaluate then use them. 0: none.
  config.ema_decay = 0.0

  config.augment = ml_collections.ConfigDict()
  # Random affine transforms of every training image inside the train step (augment.py),
  # each image its own, drawn from the step's key; all 0 trains on the images as they are.
  # The largest rotation, in degrees either way (0-180).
  config.augment.max_rotation = 0.0
  # The largest relative change of size, in [0, 1) (0.1: from 90% to 110%).
  config.augment.max_scale = 0.0
  # The largest shift along each axis, in pixels (0-14).
  config.augment.max_shift = 0.0

  config.loss = ml_collections.ConfigDict()
  # loss = digit_weight * CE(digit) + sum_weight * CE(sum).
  config.loss.digit_weight = 1.0
  config.loss.sum_weight = 1.0
  # Label smoothing of both cross-entropies during training.
  config.loss.label_smoothing = 0.0
  return config
