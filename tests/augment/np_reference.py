"""Straightforward float64 NumPy references for the augmentation tests.

Written as loops over pixels where that is the plainest statement of the
formula, independent of the matrix formulations in ssl_jax.augment.
"""
from __future__ import annotations

import colorsys
import math

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114])


def bilinear_crop(img, box, out_h, out_w):
  """Clamp-to-edge bilinear sampling of box (top, left, h, w), half-pixel centres."""
  img = np.asarray(img, np.float64)
  height, width, _ = img.shape
  top, left, box_h, box_w = (float(v) for v in box)
  out = np.zeros((out_h, out_w, img.shape[2]))
  for i in range(out_h):
    y = min(max(top + (i + 0.5) * box_h / out_h - 0.5, 0.0), height - 1.0)
    y0 = int(math.floor(y))
    y1 = min(y0 + 1, height - 1)
    wy = y - y0
    for j in range(out_w):
      x = min(max(left + (j + 0.5) * box_w / out_w - 0.5, 0.0), width - 1.0)
      x0 = int(math.floor(x))
      x1 = min(x0 + 1, width - 1)
      wx = x - x0
      out[i, j] = ((1 - wy) * (1 - wx) * img[y0, x0] + (1 - wy) * wx * img[y0, x1]
                   + wy * (1 - wx) * img[y1, x0] + wy * wx * img[y1, x1])
  return out


def antialiased_crop(img, box, out_h, out_w):
  """PIL-style triangle filter widened by the downscale factor (1 when upscaling)."""
  img = np.asarray(img, np.float64)
  height, width, _ = img.shape
  top, left, box_h, box_w = (float(v) for v in box)

  def weights(start, length, n_in, n_out):
    w = np.zeros((n_out, n_in))
    step = length / n_out
    support = max(step, 1.0)
    for i in range(n_out):
      center = start + (i + 0.5) * step
      for j in range(n_in):
        w[i, j] = max(0.0, 1.0 - abs(j + 0.5 - center) / support)
      w[i] /= w[i].sum()
    return w

  wh = weights(top, box_h, height, out_h)
  ww = weights(left, box_w, width, out_w)
  out = np.zeros((out_h, out_w, img.shape[2]))
  for i in range(out_h):
    for j in range(out_w):
      for a in range(height):
        for b in range(width):
          out[i, j] += wh[i, a] * ww[j, b] * img[a, b]
  return out


def reflect_pad(img, pad_h, pad_w):
  return np.pad(np.asarray(img, np.float64), ((pad_h, pad_h), (pad_w, pad_w), (0, 0)),
                mode="reflect")


def shift(img, dy, dx):
  """Content moved by (dy, dx) pixels, reflect padding."""
  height, width, _ = img.shape
  m = max(abs(dy), abs(dx), 1)
  padded = reflect_pad(img, m, m)
  return padded[m - dy:m - dy + height, m - dx:m - dx + width]


def gaussian_blur(img, sigma, radius):
  """Direct 2-D convolution with a normalised separable Gaussian, reflect padding."""
  img = np.asarray(img, np.float64)
  height, width, channels = img.shape
  d = np.arange(-radius, radius + 1)
  k1 = np.exp(-0.5 * (d / sigma) ** 2)
  k1 /= k1.sum()
  kernel = np.outer(k1, k1)
  padded = reflect_pad(img, radius, radius)
  out = np.zeros_like(img)
  for i in range(height):
    for j in range(width):
      patch = padded[i:i + 2 * radius + 1, j:j + 2 * radius + 1]
      out[i, j] = np.tensordot(kernel, patch, axes=([0, 1], [0, 1]))
  return out


def luma(img):
  img = np.asarray(img, np.float64)
  if img.shape[-1] == 1:
    return img
  return img @ LUMA[:, None]


def brightness(img, f):
  return np.clip(f * np.asarray(img, np.float64), 0, 1)


def contrast(img, f):
  img = np.asarray(img, np.float64)
  return np.clip(f * img + (1 - f) * luma(img).mean(), 0, 1)


def saturation(img, f):
  img = np.asarray(img, np.float64)
  if img.shape[-1] == 1:
    return img
  return np.clip(f * img + (1 - f) * luma(img), 0, 1)


def hue(img, shift_turns):
  img = np.asarray(img, np.float64)
  out = np.empty_like(img)
  for idx in np.ndindex(img.shape[:-1]):
    h, s, v = colorsys.rgb_to_hsv(*img[idx])
    out[idx] = colorsys.hsv_to_rgb((h + shift_turns) % 1.0, s, v)
  return out


def solarize(img, threshold):
  img = np.asarray(img, np.float64)
  return np.where(img >= threshold, 1 - img, img)


def posterize(img, bits):
  levels = np.round(np.clip(np.asarray(img, np.float64), 0, 1) * 255).astype(np.uint8)
  mask = np.uint8((0xFF << (8 - bits)) & 0xFF)
  return (levels & mask).astype(np.float64) / 255


def autocontrast(img):
  img = np.asarray(img, np.float64)
  out = img.copy()
  for c in range(img.shape[-1]):
    lo, hi = img[..., c].min(), img[..., c].max()
    if hi > lo:
      out[..., c] = (img[..., c] - lo) / (hi - lo)
  return out


def equalize(img, bins):
  img = np.asarray(img, np.float64)
  out = np.empty_like(img)
  for c in range(img.shape[-1]):
    values = img[..., c].ravel()
    edges = np.arange(bins + 1) / bins
    cdf = np.array([(values <= e).mean() for e in edges])
    cdf[0] = 0.0
    out[..., c] = np.interp(img[..., c], edges, cdf)
  return out


def sharpness(img, f):
  img = np.asarray(img, np.float64)
  kernel = np.ones((3, 3))
  kernel[1, 1] = 5
  kernel /= 13
  smooth = img.copy()
  for i in range(1, img.shape[0] - 1):
    for j in range(1, img.shape[1] - 1):
      smooth[i, j] = np.tensordot(kernel, img[i - 1:i + 2, j - 1:j + 2],
                                  axes=([0, 1], [0, 1]))
  return np.clip(smooth + f * (img - smooth), 0, 1)


def affine(img, matrix, fill):
  """Bilinear warp: output (y, x) about the centre samples matrix @ (y, x, 1)."""
  img = np.asarray(img, np.float64)
  matrix = np.asarray(matrix, np.float64)
  height, width, channels = img.shape
  out = np.zeros_like(img)
  for i in range(height):
    for j in range(width):
      y = i + 0.5 - height / 2
      x = j + 0.5 - width / 2
      sy = matrix[0, 0] * y + matrix[0, 1] * x + matrix[0, 2] + height / 2 - 0.5
      sx = matrix[1, 0] * y + matrix[1, 1] * x + matrix[1, 2] + width / 2 - 0.5
      y0, x0 = math.floor(sy), math.floor(sx)
      acc = np.zeros(channels)
      for yy, wy in ((y0, 1 - (sy - y0)), (y0 + 1, sy - y0)):
        for xx, wx in ((x0, 1 - (sx - x0)), (x0 + 1, sx - x0)):
          inside = 0 <= yy < height and 0 <= xx < width
          acc += wy * wx * (img[yy, xx] if inside else fill)
      out[i, j] = acc
  return out


def binomial_ok(count, n, p, sigmas=5.0):
  """|count - n p| within `sigmas` binomial standard deviations (+1 for p in {0, 1})."""
  return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1
