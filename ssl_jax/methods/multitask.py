"""Pretext tasks as heads on an encoder, and several of them at once.

`PretextTask` is what the image pretext methods (`RotNet`, `ContextEncoder`,
`Autoencoder`, `DenoisingAutoencoder`, `MAE`) share: each one names the heads
it puts on the encoder (`create_heads`) and computes its loss from a key,
the encoder, its heads and the uint8 images (`task_loss`). Used alone, a task
is a full `Method`: the model is `SSLModel(encoder, **heads)`.

`MultiTask` trains several such tasks on ONE encoder (Doersch & Zisserman
2017, "Multi-task Self-Supervised Visual Learning", arXiv:1708.07860, combine
pretext tasks the same way, with a shared trunk and one head per task):

    L = sum_t w_t L_t

Each task draws its own views from `fold_in(step_key, t)` and its heads live
under ``"{task.name}_{head}"`` in the params. Every task's loss is logged as
``"{task.name}_loss"``, beside the task's own metrics with the same prefix.
The tasks run one after the other through the same live model, so BatchNorm
statistics in the encoder are those of the last task's forward pass
(each pass normalises with its own batch statistics during training).

Hand-written: combining losses is a weighted sum, but which heads belong to
which task and how each task makes its inputs is specific to this library's
methods.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.methods.base import LossOutput, Method, StepContext, batch_stats_of
from ssl_jax.methods.common import Backbone, SSLModel, Views


@dataclasses.dataclass(frozen=True)
class TaskOutput:
  """What a pretext task's loss returns.

  Attributes:
    loss: scalar float32 loss.
    metrics: scalar metrics to log (without a task prefix).
    embeddings: [B, D] representations for the collapse monitor, or None.
  """
  loss: jax.Array
  metrics: dict = dataclasses.field(default_factory=dict)
  embeddings: jax.Array | None = None


class PretextTask(Method):
  """A method made of heads on an encoder and a loss over them.

  Subclasses are frozen dataclasses with `backbone` and `views` fields; they
  set `name` and `head_names` and implement `create_heads` and `task_loss`.
  """
  head_names: ClassVar[tuple[str, ...]] = ()
  backbone: Backbone
  views: Views

  def view_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """(H, W, C) of the images the encoder sees for `image_shape` inputs."""
    return tuple(self.views.view_shape(image_shape))

  def create_heads(self, encoder: nnx.Module, *, view_shape: tuple[int, int, int],
                   rngs: nnx.Rngs) -> dict[str, nnx.Module]:
    """The task's heads by name (the names of `head_names`)."""
    raise NotImplementedError

  def task_loss(self, key: jax.Array, encoder: nnx.Module,
                heads: Mapping[str, nnx.Module], images: jax.Array) -> TaskOutput:
    """The task's loss on uint8 images [B, H, W, C], in the traced step."""
    raise NotImplementedError

  def create_model(self, *, image_shape, rngs):
    view_shape = self.view_shape(image_shape)
    encoder = self.backbone.build(view_shape, rngs)
    heads = self.create_heads(encoder, view_shape=view_shape, rngs=rngs)
    _check_head_names(self, heads)
    return SSLModel(encoder, **heads)

  def loss(self, ctx: StepContext, params, batch_stats, extra, batch):
    model = ctx.merge(params, batch_stats)
    heads = {n: getattr(model, n) for n in self.head_names}
    out = self.task_loss(ctx.key, model.encoder, heads, batch["image"])
    return out.loss, LossOutput(batch_stats=batch_stats_of(model), metrics=out.metrics,
                                embeddings=out.embeddings)


def _check_head_names(task: PretextTask, heads: Mapping[str, nnx.Module]) -> None:
  if tuple(sorted(heads)) != tuple(sorted(task.head_names)):
    raise ValueError(f"{type(task).__name__}.create_heads returned heads {sorted(heads)}, "
                     f"but its head_names are {task.head_names}.")


def pretext_tasks() -> dict[str, type[PretextTask]]:
  """The image pretext tasks by `name`, for `MultiTask(tasks=(names...))`.

  >>> sorted(pretext_tasks())
  ['autoencoder', 'context_encoder', 'denoising_autoencoder', 'mae', 'rotnet']
  """
  from ssl_jax.methods.mae import MAE
  from ssl_jax.methods.reconstruction import (Autoencoder, ContextEncoder,
                                              DenoisingAutoencoder)
  from ssl_jax.methods.rotnet import RotNet
  return {cls.name: cls for cls in (RotNet, ContextEncoder, Autoencoder,
                                    DenoisingAutoencoder, MAE)}


def _as_views(value: Any) -> Any:
  if isinstance(value, Mapping):
    return Views(preset=value.get("preset", "simclr"), kwargs=dict(value.get("kwargs", {})))
  return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class MultiTask(Method):
  """Several pretext tasks on one encoder, losses summed with weights.

  Attributes:
    backbone: the shared encoder (the tasks' own `backbone` fields are
      replaced by it).
    tasks: the tasks, as `PretextTask` instances or names from
      `pretext_tasks()` ("rotnet", "autoencoder", ...); names must be unique.
    task_kwargs: {task name: keyword arguments} for tasks given by name
      (e.g. ``{"autoencoder": {"decoder_widths": (32, 16)}}``; a ``views``
      entry may be a dict with ``preset`` and ``kwargs``).
    weights: one weight per task (default: all 1).

  The encoder is built for the first task's view shape; for a ViT all tasks
  must produce views of that shape.

  >>> m = MultiTask(tasks=("rotnet", "autoencoder"), weights=(1.0, 0.5))
  >>> [t.name for t in m.resolved_tasks()], m.task_weights()
  (['rotnet', 'autoencoder'], (1.0, 0.5))
  """
  name = "multitask"
  backbone: Backbone = dataclasses.field(default_factory=Backbone)
  tasks: tuple = ("rotnet", "autoencoder")
  task_kwargs: dict = dataclasses.field(default_factory=dict)
  weights: tuple = ()

  def resolved_tasks(self) -> tuple[PretextTask, ...]:
    """The tasks as `PretextTask` instances sharing this method's backbone."""
    if not self.tasks:
      raise ValueError("MultiTask: `tasks` is empty; give at least one task.")
    known = pretext_tasks()
    unknown_kwargs = sorted(set(self.task_kwargs) - {
        t for t in self.tasks if isinstance(t, str)})
    if unknown_kwargs:
      raise ValueError(f"MultiTask: `task_kwargs` names {unknown_kwargs}, which are not "
                       f"among the tasks given by name {list(self.tasks)}.")
    out = []
    for task in self.tasks:
      if isinstance(task, str):
        if task not in known:
          raise ValueError(f"MultiTask: unknown task {task!r} in `tasks`; known tasks: "
                           f"{sorted(known)}.")
        kwargs = dict(self.task_kwargs.get(task, {}))
        if "views" in kwargs:
          kwargs["views"] = _as_views(kwargs["views"])
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        task = known[task](**kwargs)
      if not isinstance(task, PretextTask):
        raise TypeError(f"MultiTask: `tasks` entries must be task names or PretextTask "
                        f"instances, got {type(task).__name__}.")
      out.append(dataclasses.replace(task, backbone=self.backbone))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
      raise ValueError(f"MultiTask: task names must be unique (their heads are stored "
                       f"under the name), got {names}.")
    return tuple(out)

  def task_weights(self) -> tuple[float, ...]:
    """One float weight per task."""
    n = len(self.tasks)
    if not self.weights:
      return (1.0,) * n
    if len(self.weights) != n:
      raise ValueError(f"MultiTask: `weights` has {len(self.weights)} entries "
                       f"{tuple(self.weights)} for {n} tasks; give one per task.")
    return tuple(float(w) for w in self.weights)

  @property
  def views(self) -> Views:
    """The first task's views (what evaluation preprocessing follows)."""
    return self.resolved_tasks()[0].views

  def create_model(self, *, image_shape, rngs):
    tasks = self.resolved_tasks()
    self.task_weights()
    encoder = self.backbone.build(tasks[0].view_shape(image_shape), rngs)
    heads = {}
    for task in tasks:
      task_heads = task.create_heads(encoder, view_shape=task.view_shape(image_shape),
                                     rngs=rngs)
      _check_head_names(task, task_heads)
      heads.update({f"{task.name}_{n}": h for n, h in task_heads.items()})
    return SSLModel(encoder, **heads)

  def loss(self, ctx: StepContext, params, batch_stats, extra, batch):
    model = ctx.merge(params, batch_stats)
    total = jnp.zeros((), jnp.float32)
    metrics, embeddings = {}, None
    for i, (task, weight) in enumerate(zip(self.resolved_tasks(), self.task_weights())):
      heads = {n: getattr(model, f"{task.name}_{n}") for n in task.head_names}
      out = task.task_loss(jax.random.fold_in(ctx.key, i), model.encoder, heads,
                           batch["image"])
      total = total + weight * out.loss
      metrics[f"{task.name}_loss"] = out.loss
      metrics.update({f"{task.name}_{k}": v for k, v in out.metrics.items()})
      if embeddings is None:
        embeddings = out.embeddings
    return total, LossOutput(batch_stats=batch_stats_of(model), metrics=metrics,
                             embeddings=embeddings)
