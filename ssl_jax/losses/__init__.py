"""Pure-function self-supervised losses.

Every loss is `loss(arrays..., *, hyperparameters..., axis_name=None)` and
returns a float32 scalar: no Flax, no state, safe under `jit`, `vmap` and
`grad`; bfloat16 inputs are upcast, and bad shapes/dtypes/hyperparameters
raise `ValueError`/`TypeError` at trace time naming the argument.

Modules: `contrastive` (nt_xent, info_nce, info_nce_bilinear, supcon),
`redundancy` (barlow_twins, vicreg), `distillation` (byol_loss, dino_loss,
update_center), `metric` (triplet losses, contrastive_pair,
lifted_structured, soft_nearest_neighbor, negative_sampling, l_softmax,
arcface, cosface), `consistency` (consistency, sharpen, confidence_mask),
`reconstruction` (masked_reconstruction), `blockwise` (memory-linear
NT-Xent, InfoNCE and SupCon, chosen automatically by the public ones above
a size threshold), `fused` (Pallas kernels for NT-Xent and InfoNCE, opt-in
with `implementation="fused"`; import `ssl_jax.losses.fused` to tune them).

Batches across devices
----------------------
* `axis_name=None`: the array given is the whole batch. Under `jax.jit` with
  a batch sharded by `NamedSharding(mesh, P("data"))` this is the global
  batch and XLA inserts the communication: nothing else to do.
* `axis_name="x"` inside `jax.shard_map` (or a user's `pmap`): the arrays are
  this device's rows. Embeddings are all-gathered (negatives from every
  device, positives at `axis_index * n_local + i`) and per-row sums and
  batch statistics are psum'd, so every device returns the global-batch
  value, typed as replicated (`out_specs=P()` passes the `check_vma` check).

Gradients inside shard_map/pmap (the contract, tested):

(a) Differentiating from outside, `jax.grad(lambda z: jax.shard_map(
    partial(loss, axis_name="x"), mesh=mesh, in_specs=P("x"),
    out_specs=P())(z))`, gives the gradient of the loss on the global batch.
(b) Differentiating per device (pmap-style step), differentiate the returned
    loss as is and `jax.lax.pmean` the parameter gradients over the axis, the
    usual data-parallel recipe. It is exact in both of JAX's modes:
    - `shard_map` with `check_vma=True` (the default): the gradient of the
      local embeddings is exactly their slice of the global gradient, and the
      gradient of replicated parameters is already the full global gradient
      (JAX psums it when transposing the implicit broadcast), so the pmean is
      a no-op;
    - `pmap`, or `shard_map(check_vma=False)`: JAX transposes psum to psum,
      so each device gets `axis_size` times its share (embedding gradients
      are `axis_size` times the local slice) and the pmean makes it exact.
    Do not psum the gradients and do not divide the loss by the number of
    devices: both would be off by the number of devices.
"""
from ssl_jax.losses import blockwise
from ssl_jax.losses._common import l2_normalize
from ssl_jax.losses.blockwise import (
    info_nce_blockwise, nt_xent_blockwise, supcon_blockwise)
from ssl_jax.losses.consistency import confidence_mask, consistency, sharpen
from ssl_jax.losses.contrastive import (
    info_nce, info_nce_bilinear, nt_xent, supcon)
from ssl_jax.losses.distillation import byol_loss, dino_loss, update_center
from ssl_jax.losses.metric import (
    arcface, contrastive_pair, cosface, l_softmax, lifted_structured,
    negative_sampling, soft_nearest_neighbor, triplet, triplet_margin)
from ssl_jax.losses.reconstruction import masked_reconstruction
from ssl_jax.losses.redundancy import barlow_twins, vicreg

__all__ = [
    "arcface",
    "barlow_twins",
    "byol_loss",
    "confidence_mask",
    "consistency",
    "contrastive_pair",
    "cosface",
    "dino_loss",
    "info_nce",
    "info_nce_bilinear",
    "info_nce_blockwise",
    "l2_normalize",
    "l_softmax",
    "lifted_structured",
    "masked_reconstruction",
    "negative_sampling",
    "nt_xent",
    "nt_xent_blockwise",
    "sharpen",
    "soft_nearest_neighbor",
    "supcon",
    "supcon_blockwise",
    "triplet",
    "triplet_margin",
    "update_center",
    "vicreg",
]
