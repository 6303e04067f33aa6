"""FixMatch on the bundled digits with 100 labels (10 per class), no download.

  ssl-jax pretrain --config experiments/configs/digits_fixmatch.py --workdir runs/digits_fixmatch

The low-label baseline is the same config with the supervised-only method,
which then trains on the 100 labelled digits alone:

  ssl-jax pretrain --config experiments/configs/digits_fixmatch.py \\
      --workdir runs/digits_supervised_only --config.method=supervised_only

Both end by printing the test accuracy of their classifier head
("classifier" protocol) and the kNN / linear-probe accuracy of the encoder.
Data: scikit-learn's 1,797 8x8 digits (1,437 train / 360 test); the 1,437
training images are all used, 100 of them with their label. The batch holds
mu = 7 unlabelled images per labelled one in expectation (64 rows: about 8
labelled). FixMatch: Sohn et al. 2020, arXiv:2001.07685 (threshold 0.95,
lambda_u 1, weak flip-and-shift / strong RandAugment + Cutout views).
"""
from ssl_jax.experiment import base_config


def get_config():
  c = base_config()
  c.method = "fixmatch"
  c.backbone.encoder = "small_convnet"
  c.backbone.encoder_kwargs.widths = (32, 64, 128)
  c.data.name = "digits"
  c.data.num_labels = 100
  c.data.mu = 7.0
  c.data.labels_seed = 0
  c.batch_size = 64
  c.total_steps = 1500
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.03
  c.optimizer.lr_scaling = "none"
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_epochs = 0.0
  c.log_every = 50
  c.checkpoint_every = 500
  c.evaluate.after_training = "classifier,knn,linear"
  c.evaluate.knn_k = 20
  return c
