"""Bad arguments raise ValueError naming the argument (at trace time)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import augment

KEY = jax.random.key(0)
IMG = jnp.zeros((8, 8, 3))
BATCH = np.zeros((2, 8, 8, 3), np.uint8)


@pytest.mark.parametrize("call, match", [
    (lambda: augment.horizontal_flip(KEY, jnp.zeros((2, 8, 8, 3))), r"image.*\[H, W, C\].*batch_apply"),
    (lambda: augment.horizontal_flip(KEY, jnp.zeros((8, 8, 3), jnp.uint8)), r"image.*float.*uint8"),
    (lambda: augment.color_jitter(KEY, jnp.zeros((8, 8, 2))), r"image.*channels"),
    (lambda: augment.horizontal_flip(KEY, IMG, p=1.5), r"\bp\b.*probability.*1.5"),
    (lambda: augment.color_jitter(KEY, IMG, p=-0.1), r"\bp\b.*probability"),
    (lambda: augment.color_jitter(KEY, IMG, hue=0.7), r"hue"),
    (lambda: augment.color_jitter(KEY, IMG, brightness=-1.0), r"brightness"),
    (lambda: augment.random_resized_crop(KEY, IMG, size=4, scale=(0.5, 0.2)), r"scale.*lo <= hi"),
    (lambda: augment.random_resized_crop(KEY, IMG, size=4, scale=(0.0, 1.0)), r"scale"),
    (lambda: augment.random_resized_crop(KEY, IMG, size=4, scale=(0.1, 1.5)), r"scale.*hi <= 1"),
    (lambda: augment.random_resized_crop(KEY, IMG, size=4, ratio=(-1.0, 2.0)), r"ratio"),
    (lambda: augment.random_resized_crop(KEY, IMG, size=0), r"size"),
    (lambda: augment.gaussian_blur(KEY, IMG, kernel_size=4), r"kernel_size.*odd"),
    (lambda: augment.gaussian_blur(KEY, IMG, sigma=(0.0, 1.0)), r"sigma"),
    (lambda: augment.random_erasing(KEY, IMG, value="noise"), r"value"),
    (lambda: augment.solarize(KEY, IMG, threshold=2.0), r"threshold"),
    (lambda: augment.rand_augment(KEY, IMG, ops=("identity", "warp")), r"ops"),
    (lambda: augment.rand_augment(KEY, IMG, magnitude=3.0), r"magnitude"),
    (lambda: augment.random_block_mask(KEY, (8, 8), block=9, count=1), r"block"),
    (lambda: augment.central_mask((8,), fraction=0.25), r"shape"),
    (lambda: augment.random_region_mask(KEY, (8, 8), coverage=1.5), r"coverage"),
    (lambda: augment.normalize(IMG, mean=(0.5, 0.5), std=(1.0, 1.0, 1.0)), r"mean"),
    (lambda: augment.normalize(IMG, mean=(0.5,), std=(0.0,)), r"std"),
    (lambda: augment.to_float(IMG), r"uint8"),
])
def test_ops_reject_bad_arguments(call, match):
  with pytest.raises(ValueError, match=match):
    call()


@pytest.mark.parametrize("call, match", [
    (lambda: augment.simclr(KEY, BATCH[0]), r"images.*\[B, H, W, C\]"),
    (lambda: augment.simclr(KEY, BATCH.astype(np.float32)), r"images.*uint8.*float32"),
    (lambda: augment.simclr(KEY, np.zeros((2, 8, 8, 4), np.uint8)), r"images.*channels"),
    (lambda: augment.simclr(KEY, BATCH, blur_p=2.0), r"blur_p"),
    (lambda: augment.simclr(KEY, BATCH, strength=-1.0), r"strength"),
    (lambda: augment.simclr(KEY, BATCH, num_views=0), r"num_views"),
    (lambda: augment.simclr(KEY, BATCH, scale=(0.5, 0.1)), r"scale"),
    (lambda: augment.simclr(KEY, BATCH, mean=(0.5,)), r"mean and std"),
    (lambda: augment.simclr(KEY, BATCH, dtype=jnp.int32), r"dtype"),
    (lambda: augment.byol(KEY, BATCH, solarize_p=(0.0,)), r"solarize_p"),
    (lambda: augment.byol(KEY, BATCH, blur_p=(1.0, 1.2)), r"blur_p"),
    (lambda: augment.multi_crop(KEY, BATCH, global_size=8, local_size=4,
                                local_scale=(0.0, 0.4)), r"local_scale"),
    (lambda: augment.fixmatch_strong(KEY, BATCH, cutout=2.0), r"cutout"),
    (lambda: augment.fixmatch_weak(KEY, BATCH, flip_p=-0.5), r"flip_p"),
    (lambda: augment.rotation(KEY, np.zeros((2, 8, 6, 3), np.uint8)), r"square"),
    (lambda: augment.center(BATCH, crop_fraction=0.0), r"crop_fraction"),
])
def test_presets_reject_bad_arguments(call, match):
  with pytest.raises(ValueError, match=match):
    call()
