"""The PyTorch peers (skipped where torch is not installed, e.g. CI)."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from experiments.bench import torch_peers  # noqa: E402


def _nt_xent_numpy(z1, z2, temperature):
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n2 = len(z)
  logits = z @ z.T / temperature
  np.fill_diagonal(logits, -np.inf)
  positive = (np.arange(n2) + n2 // 2) % n2
  lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
  return float(np.mean(lse - logits[np.arange(n2), positive]))


@pytest.mark.parametrize("seed,n,d", [(0, 3, 4), (1, 5, 8)])
def test_nt_xent_matches_numpy(seed, n, d):
  z1, z2 = np.random.default_rng(seed).normal(size=(2, n, d))
  got = torch_peers.nt_xent(torch.tensor(z1), torch.tensor(z2), temperature=0.3)
  np.testing.assert_allclose(float(got), _nt_xent_numpy(z1, z2, 0.3), rtol=1e-6)


def test_views_shape_and_determinism():
  images = torch.randint(0, 256, (4, 12, 12, 3), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))
  a = torch_peers.simclr_views(images, size=8, generator=torch.Generator().manual_seed(1))
  b = torch_peers.simclr_views(images, size=8, generator=torch.Generator().manual_seed(1))
  c = torch_peers.simclr_views(images, size=8, generator=torch.Generator().manual_seed(2))
  assert a.shape == (4, 3, 8, 8) and torch.isfinite(a).all()
  assert torch.equal(a, b) and not torch.equal(a, c)


def test_hue_rotation_by_zero_is_identity_and_keeps_gray():
  x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
  same = torch_peers._hue_rotate(x, torch.zeros(2))
  np.testing.assert_allclose(same.numpy(), x.numpy(), atol=1e-5)
  gray = x[:, :1].expand(2, 3, 4, 4)
  rotated = torch_peers._hue_rotate(gray, torch.full((2,), 1.0))
  np.testing.assert_allclose(rotated.numpy(), gray.numpy(), atol=1e-5)


def test_quick_run_writes_results(tmp_path):
  path = tmp_path / "peer.json"
  torch_peers.main(["--quick", "--json", str(path)])
  saved = json.loads(path.read_text())
  assert saved["environment"]["torch_version"] == torch.__version__
  losses, simclr = saved["tasks"]
  assert all(r["status"] == "ok" and r["ms"] > 0 for r in losses["results"])
  (row,) = simclr["results"]
  assert row["status"] == "ok" and row["images_per_s"] > 0 and row["compiled"] is False
