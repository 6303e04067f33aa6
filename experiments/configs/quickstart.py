"""Quickstart: SimCLR with a small ConvNet on the bundled digits (no download).

  ssl-jax pretrain --config experiments/configs/quickstart.py --workdir runs/quickstart

About two minutes on 2 CPU cores, compile included; ends by printing the
kNN and linear-probe accuracy of the learned encoder beside the raw-pixel
and random-encoder baselines, and writes runs/quickstart/curves.png and
embedding.png. Data: scikit-learn's 1,797 8x8 handwritten digits
(1,437 train / 360 test), views upsampled to 16x16.
"""
from ssl_jax.experiment import base_config


def get_config():
  c = base_config()
  c.method = "simclr"
  c.method_kwargs.temperature = 0.2
  c.method_kwargs.projector_hidden = 256
  c.method_kwargs.projector_dim = 64
  c.backbone.encoder = "small_convnet"
  c.backbone.encoder_kwargs.widths = (32, 64, 128)
  c.views.preset = "simclr"
  c.views.kwargs.size = 16
  c.views.kwargs.scale = (0.3, 1.0)
  c.views.kwargs.blur_p = 0.0
  c.data.name = "digits"
  c.batch_size = 256
  c.epochs = 60
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.lr_scaling = "none"
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_epochs = 5
  c.log_every = 10
  c.checkpoint_every = 100
  c.monitor.knn_every_epochs = 20
  c.evaluate.after_training = "knn,linear"
  c.evaluate.knn_k = 20
  c.evaluate.plot = True
  return c
