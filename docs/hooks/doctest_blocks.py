"""MkDocs hook: render doctests and preformatted blocks of docstrings as code.

The library's docstrings put their doctests in the body of the docstring
(they run under `pytest --doctest-modules`), not under a Google-style
"Examples:" section, so mkdocstrings would hand them to Markdown as plain
paragraphs: the prompts and outputs would be reflowed into one line, and an
output such as `[0.15, 0.3]` right after `[...]` would even parse as a
reference link. Likewise the docstrings write formulas and aligned listings
as blocks indented by two spaces after a blank line (plain-text
preformatting, in the Google style), which Markdown would reflow into one
paragraph.

This Markdown preprocessor therefore wraps every run of doctest lines (from
a `>>>` line to the next blank line) in a ```pycon fence, dropping
`# doctest:` directives, and every indented block that follows a blank line
and an unindented paragraph in a ```text fence. It runs on docstrings and
pages alike; on the pages, lists, admonitions and footnotes (whose indented
continuations follow a list marker, `!!!` or `[^...]:`) are left alone.
Registered early (before mkdocstrings copies the Markdown configuration) by
`on_config`.
"""
from __future__ import annotations

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

_PROMPT = re.compile(r"^(\s*)>>>( |$)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_DIRECTIVE = re.compile(r"\s*# doctest:.*$")
_INDENTED = re.compile(r"^ {2,}\S")
# Lines whose indented continuations belong to them in Markdown.
_CONTAINER = re.compile(r"^\s*([-*+] |\d+[.)] |!!!|\?\?\?|\[\^[^\]]+\]:)")


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


def fence_indented_blocks(lines: list[str]) -> list[str]:
  """Wraps indented blocks after a blank line in ```text fences.

  A block is a run of lines indented by two or more spaces whose line before
  is blank and whose last non-blank line before that is an unindented line
  that does not open a list item, an admonition or a footnote. The block
  ends at the first blank or unindented line; it is dedented by its
  smallest indentation.
  """
  out: list[str] = []
  in_fence = None
  last_text = ""  # the last non-blank line outside fences
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
      last_text = line
      i += 1
      continue
    starts_block = (in_fence is None and _INDENTED.match(line) and i > 0
                    and not lines[i - 1].strip() and last_text
                    and not last_text[0].isspace()
                    and not _CONTAINER.match(last_text)
                    and not _FENCE.match(last_text))
    if not starts_block:
      out.append(line)
      if line.strip():
        last_text = line
      i += 1
      continue
    block = []
    while (i < len(lines) and lines[i].strip() and _INDENTED.match(lines[i])
           and not _FENCE.match(lines[i])):
      block.append(lines[i])
      i += 1
    margin = min(len(b) - len(b.lstrip(" ")) for b in block)
    out += ["```text", *(b[margin:] for b in block), "```"]
    last_text = block[-1]
  return out


class _DocstringPreprocessor(Preprocessor):

  def run(self, lines: list[str]) -> list[str]:
    return fence_indented_blocks(fence_doctests(lines))


class DoctestBlocks(Extension):
  """Python-Markdown extension fencing doctests and preformatted blocks."""

  def extendMarkdown(self, md):  # noqa: N802 (Markdown's API name)
    # Before the fenced-code preprocessor (priority 25) so the fences
    # written here are parsed as code.
    md.preprocessors.register(_DocstringPreprocessor(md), "doctest_blocks", 28)


@event_priority(100)  # Before mkdocstrings reads the Markdown extensions.
def on_config(config):
  config.markdown_extensions.append(DoctestBlocks())
  return config
