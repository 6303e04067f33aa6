"""Fixtures for the data tests: isolated search paths and a network tripwire."""
from __future__ import annotations

import socket

import pytest

from ssl_jax.data import paths


class NetworkTouched(BaseException):
  """Raised by the tripwire; a BaseException so no `except Exception` hides it."""


@pytest.fixture
def isolated_paths(tmp_path, monkeypatch):
  """Points every default search location into an empty temporary folder."""
  home = tmp_path / "home"
  home.mkdir()
  monkeypatch.setenv("HOME", str(home))
  monkeypatch.setenv(paths.DATA_ENV_VAR, str(tmp_path / "env_data"))
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds_default"))
  monkeypatch.setattr(paths, "SYSTEM_DIRS", {
      "fashion_mnist": (str(tmp_path / "system" / "fashion-mnist"),),
      "mnist": (str(tmp_path / "system" / "mnist"),),
  })
  return tmp_path


@pytest.fixture
def no_network(monkeypatch):
  """Any attempt to resolve a host or open a connection fails loudly."""
  attempts = []

  def trip(*args, **kwargs):
    attempts.append(args)
    raise NetworkTouched(f"network access attempted: {args!r}")

  monkeypatch.setattr(socket.socket, "connect", trip)
  monkeypatch.setattr(socket.socket, "connect_ex", trip)
  monkeypatch.setattr(socket, "getaddrinfo", trip)
  monkeypatch.setattr(socket, "create_connection", trip)
  return attempts
