"""Where file-based sources look for data when no `data_dir` is given.

The search order is: `$SSL_JAX_DATA/<name>`, `~/.ssl_jax/data/<name>`, then
system folders that Debian packages install (`/usr/share/datasets/...`, where
`dataset-fashion-mnist` puts the original Fashion-MNIST files). An explicit
`data_dir` replaces the defaults, so that a user who names a folder never
gets data from somewhere else.

>>> candidate_dirs("cifar10", data_dir="/data")
['/data', '/data/cifar10']
"""
from __future__ import annotations

import os

# Environment variable naming a folder that holds one sub-folder per data set.
DATA_ENV_VAR = "SSL_JAX_DATA"
# Folders installed by Debian's dataset packages, by our canonical name.
SYSTEM_DIRS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
    "mnist": ("/usr/share/datasets/mnist",),
}


def user_data_root() -> str:
  """The per-user data folder, `~/.ssl_jax/data`."""
  return os.path.join(os.path.expanduser("~"), ".ssl_jax", "data")


def candidate_dirs(name: str, *, data_dir: str | os.PathLike | None = None
                   ) -> list[str]:
  """Folders to search for data set `name`, in order, duplicates removed.

  Args:
    name: canonical data set name (e.g. "fashion_mnist").
    data_dir: when given, only `data_dir` and `data_dir/<name>` are searched.

  Returns:
    Absolute or user-expanded paths; they need not exist.
  """
  if data_dir is not None:
    root = os.path.expanduser(os.fspath(data_dir))
    dirs = [root, os.path.join(root, name)]
  else:
    dirs = []
    env = os.environ.get(DATA_ENV_VAR)
    if env:
      dirs.append(os.path.join(os.path.expanduser(env), name))
    dirs.append(os.path.join(user_data_root(), name))
    dirs.extend(SYSTEM_DIRS.get(name, ()))
  seen: list[str] = []
  for d in dirs:
    if d not in seen:
      seen.append(d)
  return seen


def supply_hints(name: str, files: str) -> list[str]:
  """Standard ways to supply the files of a file-based data set."""
  return [
      f"put {files} in a folder and pass data_dir=<that folder> "
      f"(load_dataset({name!r}, data_dir=...) or --config.data.data_dir=...)",
      f"or put them in ${DATA_ENV_VAR}/{name}/ or "
      f"{os.path.join(user_data_root(), name)}/",
  ]
