"""The classic 220,125-parameter network of this task, for like-for-like speed comparisons.

Seven 3x3 convolutions 32-64-pool-64-64-pool-64-128-10 (the last one, over the 3x3 map,
is the flatten + dense layer here: the same function and parameter count), digit logits
concatenated with the one-hot number, dense 128, dense 19; batch 256, Adam 1e-3, loss
(CE digit + CE sum) / 2, no normalisation, no schedule.

Its trunk is written '32 64M 64 64M 64v 128v': each '64M' block max pools its
convolution's output and then adds the bias and applies ReLU. That is the same function
as the usual conv, bias, ReLU, max pool (max pooling commutes with adding a per-channel
bias and with ReLU; tests/test_models.py checks it), with the bias and ReLU on a 4x
smaller map.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.batch_size = 256
  config.model.conv_layers = "32 64M 64 64M 64v 128v"
  config.model.dense_features = ()
  config.model.sum_hidden_features = (128,)
  config.model.sum_head_input = "logits"
  config.model.batch_norm = False
  config.model.dropout_rate = 0.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "constant"
  config.loss.digit_weight = 0.5
  config.loss.sum_weight = 0.5
  return config
