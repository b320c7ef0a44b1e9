"""configs/multi_digit.py with the small network of the neuro-symbolic literature.

The LeNet-style digit network of DeepProbLog, DeepStochLog, A-NeSI and their successors:
two 5x5 convolutions with 6 and 16 features, each max pooled, then dense layers 120, 84
and 10, with ReLU and no normalisation or dropout (44,426 parameters). Written here as
'6vM 16vM': each conv's output is max pooled before its bias and ReLU, the same function
as conv, bias, ReLU, pool (see configs/reference_cnn.py). The training recipe is that of
configs/multi_digit.py, over more epochs: an epoch of this network takes a fifth of the
time. The epochs and the peak learning rate were chosen on a validation split of the
training images at N = 15 (experiments/README.md, "Multi-digit addition").
"""

from configs import multi_digit


def get_config():
  config = multi_digit.get_config()
  config.model.conv_layers = "6vM 16vM"
  config.model.kernel_size = 5
  config.model.dense_features = (120, 84)
  config.model.batch_norm = False
  config.model.dropout_rate = 0.0
  config.num_epochs = 40
  return config
