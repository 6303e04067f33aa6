"""Float64 NumPy references for the layers the models are built from.

Written independently of the code under test, straight from the textbook
definitions (and PyTorch's conventions where they differ from Flax's
defaults: symmetric conv padding, -inf max-pool padding, erf GELU).
"""
from __future__ import annotations

import math

import numpy as np

BN_EPS = 1e-5
LN_EPS = 1e-6


def f64(x) -> np.ndarray:
  return np.asarray(x, dtype=np.float64)


def conv2d(x: np.ndarray, w: np.ndarray, *, stride: int, pad: int,
           b: np.ndarray | None = None) -> np.ndarray:
  """x [B, H, W, C], w [k, k, C, O], zero padding `pad` on every side."""
  k = w.shape[0]
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  ho = (x.shape[1] + 2 * pad - k) // stride + 1
  wo = (x.shape[2] + 2 * pad - k) // stride + 1
  out = np.zeros((x.shape[0], ho, wo, w.shape[3]))
  for i in range(k):
    for j in range(k):
      patch = xp[:, i:i + stride * ho:stride, j:j + stride * wo:stride, :]
      out += patch @ w[i, j]
  return out if b is None else out + b


def max_pool_3x3_s2_p1(x: np.ndarray) -> np.ndarray:
  """PyTorch MaxPool2d(3, stride=2, padding=1): padding never wins the max."""
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
  ho = (x.shape[1] + 2 - 3) // 2 + 1
  wo = (x.shape[2] + 2 - 3) // 2 + 1
  out = np.full((x.shape[0], ho, wo, x.shape[3]), -np.inf)
  for i in range(3):
    for j in range(3):
      out = np.maximum(out, xp[:, i:i + 2 * ho:2, j:j + 2 * wo:2, :])
  return out


def batch_norm(x: np.ndarray, *, scale, bias, mean, var, train: bool,
               eps: float = BN_EPS, momentum: float = 0.9):
  """Returns (y, new_mean, new_var); statistics over all axes but the last.

  Train mode normalises with the biased batch variance and moves the running
  averages by (1 - momentum) towards the batch statistics (Flax's update).
  """
  axes = tuple(range(x.ndim - 1))
  if train:
    m, v = x.mean(axes), x.var(axes)
    new_mean = momentum * mean + (1 - momentum) * m
    new_var = momentum * var + (1 - momentum) * v
  else:
    m, v = mean, var
    new_mean, new_var = mean, var
  y = (x - m) / np.sqrt(v + eps)
  if scale is not None:
    y = y * scale
  if bias is not None:
    y = y + bias
  return y, new_mean, new_var


def relu(x):
  return np.maximum(x, 0.0)


_erf = np.vectorize(math.erf)


def gelu(x):
  """Exact GELU, x * Phi(x), as PyTorch's nn.GELU()."""
  return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def layer_norm(x, *, scale, bias, eps: float = LN_EPS):
  m = x.mean(-1, keepdims=True)
  v = x.var(-1, keepdims=True)
  return (x - m) / np.sqrt(v + eps) * scale + bias


def softmax(x, axis=-1):
  e = np.exp(x - x.max(axis, keepdims=True))
  return e / e.sum(axis, keepdims=True)


def self_attention(x, *, w_qkv, b_qkv, w_proj, b_proj, num_heads: int):
  """x [B, T, D]; qkv output split as (3, heads, head_dim), timm's layout."""
  b, t, d = x.shape
  hd = d // num_heads
  qkv = (x @ w_qkv + b_qkv).reshape(b, t, 3, num_heads, hd)
  q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # B,H,T,hd
  att = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd))
  o = (att @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
  return o @ w_proj + b_proj
