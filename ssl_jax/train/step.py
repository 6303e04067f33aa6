"""The pure training step, and its jit with data-parallel shardings.

`train_step(state, batch) -> (state, metrics)` is one optimiser step of any
method: augmentation, forward, loss, backward, update and the method's
post-step update (EMA, enqueue, center) all happen inside one compiled
function. Jitted with the batch sharded over a 1-D ``data`` mesh and the
state replicated (global-view SPMD), BatchNorm statistics and contrastive
negatives span the global batch with no explicit collective.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from ssl_jax import parallel
from ssl_jax.methods.base import Method, StepContext
from ssl_jax.train import metrics as metrics_lib
from ssl_jax.train.state import TrainState

StepFn = Callable[[TrainState, dict], tuple[TrainState, dict]]


def _all_finite(tree: Any) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def make_train_step(method: Method, *, graphdef: nnx.GraphDef,
                    tx: optax.GradientTransformation, total_steps: int,
                    learning_rate: optax.ScalarOrSchedule | None = None,
                    monitor_every: int = 0) -> StepFn:
  """Returns the pure `train_step(state, batch) -> (state, metrics)`.

  Args:
    method: what to train.
    graphdef: the static structure from `init_train_state`.
    tx: the optax optimiser.
    total_steps: planned run length (momentum and temperature schedules).
    learning_rate: the schedule, only to log the learning rate.
    monitor_every: compute the effective-rank collapse monitor on the
      method's embeddings every this many steps (0: never). The cheaper
      embedding std is computed every step.

  A step whose loss or gradients are not finite leaves the state unchanged
  but for `step`, and records itself in `nonfinite_step`; the loop stops the
  run there instead of training on NaN.
  """

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    ctx = StepContext(graphdef=graphdef, step=state.step, total_steps=total_steps,
                      key=jax.random.fold_in(state.rng, state.step))

    def loss_fn(params):
      return method.loss(ctx, params, state.batch_stats, state.extra, batch)

    (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    extra = method.update_extra(ctx, state.extra, params=params,
                                batch_stats=out.batch_stats, updates=out.updates)

    finite = jnp.isfinite(loss) & _all_finite(grads)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = TrainState(
        step=state.step + 1,
        params=keep(params, state.params),
        batch_stats=keep(out.batch_stats, state.batch_stats),
        opt_state=keep(opt_state, state.opt_state),
        extra=keep(extra, state.extra),
        rng=state.rng,
        nonfinite_step=jnp.where(finite | (state.nonfinite_step >= 0),
                                 state.nonfinite_step, state.step))

    metrics = {"loss": jnp.asarray(loss, jnp.float32),
               "grad_norm": optax.tree.norm(grads)}
    if learning_rate is not None:
      lr = learning_rate(state.step) if callable(learning_rate) else learning_rate
      metrics["learning_rate"] = jnp.asarray(lr, jnp.float32)
    metrics.update(out.metrics)
    metrics.update(method.extra_metrics(ctx, extra))
    if out.embeddings is not None:
      metrics["embedding_std"] = metrics_lib.embedding_std(out.embeddings)
      if monitor_every:
        # Steps the loop logs: the first, every monitor_every-th, the last.
        due = (((state.step + 1) % monitor_every == 0) | (state.step == 0)
               | (state.step + 1 == total_steps))
        metrics["effective_rank"] = jax.lax.cond(
            due, lambda z: metrics_lib.effective_rank(z),
            lambda z: jnp.full((), jnp.nan, jnp.float32), out.embeddings)
        # Tells a skipped step's placeholder from a real NaN (the loop drops
        # the former and logs the latter).
        metrics["effective_rank_computed"] = due
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    metrics["nonfinite_step"] = new_state.nonfinite_step
    return new_state, metrics

  return train_step


def jit_train_step(train_step: StepFn, mesh: Mesh, *, donate: bool = True) -> StepFn:
  """Jits `train_step` for data parallelism over `mesh`.

  The batch is sharded on its leading axis over the mesh's data axis, the
  state and metrics are replicated, and the input state is donated so its
  buffers are reused for the output.
  """
  replicated = parallel.replicated_sharding(mesh)
  return jax.jit(train_step,
                 in_shardings=(replicated, parallel.batch_sharding(mesh)),
                 out_shardings=(replicated, replicated),
                 donate_argnums=(0,) if donate else ())
