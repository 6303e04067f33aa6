"""BYOL with a small ConvNet on the bundled digits (no download).

  ssl-jax pretrain --config experiments/configs/digits_byol.py --workdir runs/digits_byol

The BYOL counterpart of quickstart.py (same encoder, data, views and
budget), so the two methods can be compared on a CPU in a few minutes.
BYOL's target network follows the cosine momentum schedule of Grill et al.
(2020) from base_momentum; with only ~360 steps here we start at 0.99
rather than the paper's 0.996 so the target keeps up with the online net.
"""
from ssl_jax.experiment import base_config


def get_config():
  c = base_config()
  c.method = "byol"
  c.method_kwargs.projector_hidden = 256
  c.method_kwargs.projector_dim = 64
  c.method_kwargs.predictor_hidden = 256
  c.method_kwargs.base_momentum = 0.99
  c.backbone.encoder = "small_convnet"
  c.backbone.encoder_kwargs.widths = (32, 64, 128)
  c.views.preset = "byol"
  c.views.kwargs.size = 16
  c.views.kwargs.scale = (0.3, 1.0)
  c.views.kwargs.blur_p = (0.0, 0.0)
  c.views.kwargs.solarize_p = (0.0, 0.0)
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
