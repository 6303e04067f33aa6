"""The documentation's code runs, and the site builds without a warning.

Every ```python block of docs/**/*.md is executed on the CPU, page by page:
the blocks of one page run in order in one namespace (later blocks use the
names earlier ones define), in a temporary working directory so that
examples writing files (workdirs, PNGs) leave nothing in the checkout
(`experiments/` is linked into it, for the config paths the pages use). A
block is left out when the last non-blank line before its opening fence is
the marker `<!-- skip -->` (for commands that need a GPU, several hosts, a
finished run or data that is not here); skipped blocks must still compile.

`mkdocs build --strict` runs when MkDocs, Material and mkdocstrings are
installed (the project's `docs` extra), and is skipped otherwise; so are the
tests of the build hook that fences doctests and preformatted docstring
blocks (docs/hooks/doctest_blocks.py).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP_MARKER = "<!-- skip -->"
_OPEN = re.compile(r"^(\s*)```python\s*$")
_SNIPPET = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$')


@dataclasses.dataclass(frozen=True)
class Block:
  page: str
  line: int  # 1-based line of the opening fence
  code: str
  skip: bool


def python_blocks(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[Block]:
  """The ```python blocks of a Markdown file, dedented, in order."""
  lines = path.read_text().splitlines()
  blocks = []
  i = 0
  while i < len(lines):
    opened = _OPEN.match(lines[i])
    if not opened:
      i += 1
      continue
    indent = opened.group(1)
    previous = next((l.strip() for l in reversed(lines[:i]) if l.strip()), "")
    start, body = i, []
    i += 1
    while i < len(lines) and lines[i].strip() != "```":
      line = lines[i]
      body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
      i += 1
    if i == len(lines):
      raise ValueError(f"{path}:{start + 1}: ```python block is never closed.")
    blocks.append(Block(page=str(path.relative_to(root)), line=start + 1,
                        code="\n".join(body) + "\n", skip=previous == SKIP_MARKER))
    i += 1
  return blocks


PAGES = sorted(DOCS.rglob("*.md"))
RUNNABLE = [p for p in PAGES if any(not b.skip for b in python_blocks(p))]


def test_pages_found():
  # Guards the collection itself: an empty glob would make every test vacuous.
  assert len(PAGES) >= 10 and len(RUNNABLE) >= 6, (PAGES, RUNNABLE)


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.name)
def test_page_examples_run(page, tmp_path, monkeypatch):
  # The pages say their examples run from the root of a checkout; the
  # configs are linked in so that relative paths such as
  # experiments/configs/quickstart.py resolve from the temporary directory.
  (tmp_path / "experiments").symlink_to(ROOT / "experiments")
  monkeypatch.chdir(tmp_path)
  # A real module in sys.modules, so that what the examples define behaves as
  # it would in a file (dataclasses look their module up by name).
  module = types.ModuleType(f"docs_example_{page.stem}")
  monkeypatch.setitem(sys.modules, module.__name__, module)
  # Pages may register methods (custom_method.md); the registry is shared by
  # every test of this process, so it is restored afterwards.
  from ssl_jax import methods
  monkeypatch.setattr(methods, "REGISTRY", dict(methods.REGISTRY))
  namespace = module.__dict__
  ran = 0
  for block in python_blocks(page):
    if block.skip:
      continue
    code = compile(block.code, f"{block.page}, block at line {block.line}", "exec")
    try:
      exec(code, namespace)  # pylint: disable=exec-used
    except Exception as e:
      raise AssertionError(
          f"the ```python block at {block.page}:{block.line} failed: "
          f"{type(e).__name__}: {e}") from e
    ran += 1
  assert ran > 0


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_block_compiles(page):
  for block in python_blocks(page):
    compile(block.code, f"{block.page}, block at line {block.line}", "exec")


def test_block_parser(tmp_path):
  page = tmp_path / "page.md"
  page.write_text("text\n\n<!-- skip -->\n```python\nraise SystemExit\n```\n\n"
                  "!!! note\n    ```python\n    x = 1\n    ```\n")
  assert [(b.line, b.skip, b.code) for b in python_blocks(page, tmp_path)] == [
      (4, True, "raise SystemExit\n"), (9, False, "x = 1\n")]


def test_snippet_includes_exist():
  """Every `--8<-- "file"` include names a file under experiments/results/.

  The build itself tolerates a missing file (snippets' check_paths is off,
  so a site built from a partial checkout still builds); this catches a
  misspelt name here instead.
  """
  base = ROOT / "experiments" / "results"
  includes = [(page, m.group(1)) for page in PAGES
              for m in map(_SNIPPET.match, page.read_text().splitlines()) if m]
  assert includes, "the results page should include experiments/results/*.md"
  missing = [f"{page.name}: {name}" for page, name in includes
             if not (base / name).is_file()]
  assert not missing, f"snippet includes without a file in {base}: {missing}"


def _have(*modules: str) -> bool:
  return all(importlib.util.find_spec(m) is not None for m in modules)


@pytest.mark.skipif(not _have("mkdocs", "markdown"),
                    reason="needs the docs extra: pip install -e '.[docs]'")
def test_doctest_runs_are_fenced():
  """The build hook turns `>>>` runs into pycon fences, and only those."""
  spec = importlib.util.spec_from_file_location(
      "doctest_blocks", DOCS / "hooks" / "doctest_blocks.py")
  hook = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(hook)
  lines = ["Text.", ">>> f(1)  # doctest: +SKIP", "[0.5, 1.5]", "", "More.",
           "```python", ">>> left alone", "```"]
  assert hook.fence_doctests(lines) == [
      "Text.", "", "```pycon", ">>> f(1)", "[0.5, 1.5]", "```", "", "",
      "More.", "```python", ">>> left alone", "```"]


@pytest.mark.skipif(not _have("mkdocs", "markdown"),
                    reason="needs the docs extra: pip install -e '.[docs]'")
def test_indented_blocks_are_fenced_outside_lists():
  """Docstring formulas keep their lines; list continuations stay Markdown."""
  spec = importlib.util.spec_from_file_location(
      "doctest_blocks", DOCS / "hooks" / "doctest_blocks.py")
  hook = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(hook)
  lines = ["The loss:", "", "  a  = 1", "    b = 2", "", "Text.", "",
           "- item", "", "  loose paragraph", "", "!!! note", "    body"]
  assert hook.fence_indented_blocks(lines) == [
      "The loss:", "", "```text", "a  = 1", "  b = 2", "```", "", "Text.", "",
      "- item", "", "  loose paragraph", "", "!!! note", "    body"]


@pytest.mark.skipif(not _have("mkdocs", "material", "mkdocstrings",
                              "mkdocstrings_handlers.python"),
                    reason="needs the docs extra: pip install -e '.[docs]'")
def test_mkdocs_build_strict(tmp_path):
  env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
  result = subprocess.run(
      [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
       str(tmp_path / "site")],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  assert (tmp_path / "site" / "index.html").is_file()
  assert (tmp_path / "site" / "api" / "losses" / "index.html").is_file()
