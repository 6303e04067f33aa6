"""On-device image augmentation for self-supervised learning.

Ops are pure functions `op(key, image, *, params)` of ONE float image
[H, W, C] in [0, 1] (C = 1 or 3); batch them with `batch_apply` (vmap with
one key per example). Presets (`simclr`, `byol`, `multi_crop`,
`fixmatch_weak`, `fixmatch_strong`, `rotation`, `center`) take a uint8 batch
[B, H, W, C] and return normalised views, and are meant to be called inside
the jitted training step so that augmentation runs on the accelerator.

Resampling (crops, flips, shifts, blur) is done with per-example
interpolation matrices, `out = A_h @ img @ A_w^T`, i.e. batched matmuls
rather than gathers; colour ops are branch-free blends. See the module
docstrings of `resample`, `geometry`, `color`, `filters`, `randaugment`,
`masks` and `presets` for the formulas and references.

>>> import jax, jax.numpy as jnp
>>> from ssl_jax import augment
>>> images = jnp.zeros((8, 12, 12, 3), jnp.uint8)  # uint8 [B, H, W, C]
>>> views = augment.simclr(jax.random.key(0), images, size=8, num_views=3)
>>> [v.shape for v in views]
[(8, 8, 8, 3), (8, 8, 8, 3), (8, 8, 8, 3)]
"""
from ssl_jax.augment.batching import batch_apply
from ssl_jax.augment.color import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    autocontrast,
    color_jitter,
    equalize,
    hsv_to_rgb,
    posterize,
    random_grayscale,
    rgb_to_hsv,
    solarize,
    solarize_image,
    to_grayscale,
)
from ssl_jax.augment.convert import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    default_mean_std,
    denormalize,
    normalize,
    to_float,
    to_uint8,
)
from ssl_jax.augment.erasing import cutout, random_erasing
from ssl_jax.augment.filters import (
    blur,
    blur_kernel_size,
    gaussian_blur,
    gaussian_noise,
    sharpness,
)
from ssl_jax.augment.geometry import (
    center_crop_resize,
    horizontal_flip,
    random_resized_crop,
    random_translate,
    resize,
    resized_crop,
    rotate90,
    sample_crop_box,
)
from ssl_jax.augment.masks import (
    central_mask,
    random_block_mask,
    random_region_mask,
)
from ssl_jax.augment.presets import (
    PRESETS,
    byol,
    center,
    fixmatch_strong,
    fixmatch_weak,
    multi_crop,
    rotation,
    simclr,
)
from ssl_jax.augment.randaugment import rand_augment

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "PRESETS", "adjust_brightness",
    "adjust_contrast", "adjust_hue", "adjust_saturation", "autocontrast",
    "batch_apply", "blur", "blur_kernel_size", "byol", "center",
    "center_crop_resize", "central_mask", "color_jitter", "cutout",
    "default_mean_std", "denormalize", "equalize", "fixmatch_strong",
    "fixmatch_weak", "gaussian_blur", "gaussian_noise", "horizontal_flip",
    "hsv_to_rgb", "multi_crop", "normalize", "posterize", "rand_augment",
    "random_block_mask", "random_erasing", "random_grayscale",
    "random_region_mask", "random_resized_crop", "random_translate", "resize",
    "resized_crop", "rgb_to_hsv", "rotate90", "rotation", "sample_crop_box",
    "sharpness", "simclr", "solarize", "solarize_image", "to_float",
    "to_grayscale", "to_uint8",
]
