"""MkDocs hook: render `>>>` doctest runs in docstrings as code blocks.

The library's docstrings put their doctests in the body of the docstring
(they run under `pytest --doctest-modules`), not under a Google-style
"Examples:" section, so mkdocstrings would hand them to Markdown as plain
paragraphs: the prompts and outputs would be reflowed into one line, and an
output such as `[0.15, 0.3]` right after `[...]` would even parse as a
reference link. This Markdown preprocessor wraps every run of doctest lines
(from a `>>>` line to the next blank line) in a ```pycon fence and drops
`# doctest:` directives, for docstrings and pages alike. Registered early
(before mkdocstrings copies the Markdown configuration) by `on_config`.
"""
from __future__ import annotations

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

_PROMPT = re.compile(r"^(\s*)>>>( |$)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_DIRECTIVE = re.compile(r"\s*# doctest:.*$")


def fence_doctests(lines: list[str]) -> list[str]:
  """Wraps each doctest run of `lines` in a pycon code fence."""
  out: list[str] = []
  in_fence = None
  i = 0
  while i < len(lines):
    line = lines[i]
    fence = _FENCE.match(line)
    if fence:
      marker = fence.group(1)
      if in_fence is None:
        in_fence = marker
      elif in_fence == marker:
        in_fence = None
      out.append(line)
      i += 1
      continue
    prompt = _PROMPT.match(line) if in_fence is None else None
    if not prompt:
      out.append(line)
      i += 1
      continue
    indent = prompt.group(1)
    block = []
    while i < len(lines) and lines[i].strip():
      block.append(_DIRECTIVE.sub("", lines[i]))
      i += 1
    if out and out[-1].strip():
      out.append("")
    out += [f"{indent}```pycon", *block, f"{indent}```", ""]
  return out


class _DoctestPreprocessor(Preprocessor):

  def run(self, lines: list[str]) -> list[str]:
    return fence_doctests(lines)


class DoctestBlocks(Extension):
  """Python-Markdown extension wrapping doctest runs in code fences."""

  def extendMarkdown(self, md):  # noqa: N802 (Markdown's API name)
    # Before the fenced-code preprocessor (priority 25) so the fences
    # written here are parsed as code.
    md.preprocessors.register(_DoctestPreprocessor(md), "doctest_blocks", 28)


@event_priority(100)  # Before mkdocstrings reads the Markdown extensions.
def on_config(config):
  config.markdown_extensions.append(DoctestBlocks())
  return config
