"""Every ```python block of README.md and docs/**/*.md runs, so no snippet can rot.

The blocks of one Markdown file run in order in one namespace, as a reader
follows a page, in a fresh temporary directory. Two HTML comments, invisible
when rendered, steer a block; each goes on the line right above its fence:

* ``<!-- notest -->``: the block is not run (keep these rare: a block that
  cannot run in CI, such as one that needs a GPU or a second host);
* ``<!-- file: NAME -->``: the block (YAML, JSON, CSV...) is written to
  ``NAME`` for later blocks to read.

The public API is checked here too: every public object has a docstring that
documents each argument, and the API reference page lists it.
"""

from __future__ import annotations

import dataclasses
import inspect
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<what>notest|file:\s*(?P<name>\S+))\s*-->\s*$")


@dataclasses.dataclass(frozen=True)
class Block:
  lang: str
  line: int  # 1-based line of the first line of code
  code: str
  marker: str | None  # "notest", "file", or None
  file_name: str | None = None


def code_blocks(text: str) -> list[Block]:
  """The fenced code blocks of a Markdown text, with the marker above each."""
  lines = text.splitlines()
  blocks, i = [], 0
  while i < len(lines):
    m = _FENCE.match(lines[i])
    if not m:
      i += 1
      continue
    indent, fence = m["indent"], m["fence"]
    lang = (m["info"].strip().split() or [""])[0].lstrip("{.").rstrip("}")
    above = _MARKER.match(lines[i - 1]) if i > 0 else None
    body, j = [], i + 1
    while j < len(lines) and not (
        lines[j].strip().startswith(fence)
        and lines[j].strip().strip(fence[0]) == ""):
      line = lines[j]
      body.append(line[len(indent):] if line.startswith(indent) else line)
      j += 1
    if j == len(lines):
      raise ValueError(f"unclosed code fence at line {i + 1}")
    marker = name = None
    if above:
      marker = "file" if above["name"] else "notest"
      name = above["name"]
    blocks.append(Block(lang, i + 2, "\n".join(body) + "\n", marker, name))
    i = j + 1
  return blocks


def _page_id(path: pathlib.Path) -> str:
  return str(path.relative_to(ROOT))


def test_code_blocks_parser_reads_markers_and_indented_fences():
  text = "\n".join([
      "intro", "```python", "x = 1", "```",
      "<!-- notest -->", "```python", "raise SystemExit", "```",
      "<!-- file: cfg.yaml -->", "```yaml", "a: 1", "```",
      "!!! note", "    ```python", "    y = x + 1", "    ```",
      "```bash", "echo hi", "```"])
  blocks = code_blocks(text)
  assert [(b.lang, b.line, b.marker, b.file_name) for b in blocks] == [
      ("python", 3, None, None), ("python", 7, "notest", None),
      ("yaml", 11, "file", "cfg.yaml"), ("python", 15, None, None),
      ("bash", 18, None, None)]
  assert blocks[3].code == "y = x + 1\n"


def test_runnable_blocks_are_the_rule():
  """notest stays rare, and the README's example and the docs have blocks."""
  blocks = {p: code_blocks(p.read_text()) for p in PAGES}
  python = [b for bs in blocks.values() for b in bs if b.lang == "python"]
  skipped = [b for b in python if b.marker == "notest"]
  assert any(b.lang == "python" and b.marker is None
             for b in blocks[ROOT / "README.md"])
  assert len(python) >= 20, len(python)
  assert len(skipped) <= max(2, len(python) // 10), (
      f"{len(skipped)} of {len(python)} python blocks are notest")


@pytest.mark.parametrize("path", PAGES, ids=_page_id)
def test_python_blocks_run(path, tmp_path, monkeypatch):
  blocks = code_blocks(path.read_text())
  runnable = [b for b in blocks
              if b.marker == "file" or (b.lang == "python" and b.marker is None)]
  if not any(b.lang == "python" for b in runnable):
    pytest.skip("no python block")
  import jax  # pylint: disable=import-outside-toplevel
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv("MPLBACKEND", "Agg")
  namespace = {"__name__": f"docs:{_page_id(path)}"}
  x64 = jax.config.jax_enable_x64
  try:
    for b in runnable:
      if b.marker == "file":
        target = tmp_path / b.file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(b.code)
        continue
      # Leading newlines make tracebacks point at the Markdown file's lines.
      code = compile("\n" * (b.line - 1) + b.code, str(path), "exec")
      exec(code, namespace)  # pylint: disable=exec-used
  finally:
    jax.config.update("jax_enable_x64", x64)


def _public_api():
  """(qualified name, object) of everything the API reference must show."""
  import adaptive_optax as ao  # pylint: disable=import-outside-toplevel
  from adaptive_optax import cli, config, flax_utils, logging  # pylint: disable=import-outside-toplevel
  objects = {f"adaptive_optax.{n}": getattr(ao, n) for n in ao.__all__
             if not inspect.ismodule(getattr(ao, n))}
  objects.update({
      "adaptive_optax.presets.get": ao.presets.get,
      "adaptive_optax.presets.merge": ao.presets.merge,
      "adaptive_optax.config.ConfigError": config.ConfigError,
      "adaptive_optax.flax_utils.TrainState": flax_utils.TrainState,
      "adaptive_optax.logging.TensorBoardLogger": logging.TensorBoardLogger,
      "adaptive_optax.logging.write_metrics": logging.write_metrics,
      "adaptive_optax.cli.main": cli.main,
  })
  return objects


def _documented_names(doc: str) -> set[str]:
  """Argument names listed in a Google-style ``Args:`` section."""
  m = re.search(r"^(\s*)Args:\s*$", doc, re.MULTILINE)
  if not m:
    return set()
  names, indent = set(), None
  for line in doc[m.end():].splitlines()[1:]:
    if not line.strip():
      continue
    width = len(line) - len(line.lstrip())
    if width <= len(m[1]):
      break
    indent = indent or width
    if width == indent:
      names.update(n.strip().lstrip("*") for n in
                   line.split(":", 1)[0].split(","))
  return names


@pytest.mark.parametrize("name", sorted(_public_api()))
def test_public_api_is_documented(name):
  obj = _public_api()[name]
  doc = inspect.getdoc(obj) or ""
  assert doc.strip(), f"{name} has no docstring"
  if inspect.isfunction(obj):
    params = [p for p in inspect.signature(obj).parameters.values()
              if p.name not in ("self", "cls")]
    missing = {p.name for p in params} - _documented_names(doc)
    assert not missing, f"{name}'s docstring does not document {sorted(missing)}"


def test_api_reference_lists_the_public_api():
  listed = set(re.findall(r"^:::\s*(\S+)", (DOCS / "api.md").read_text(),
                          re.MULTILINE))
  # The optional front ends (not imported here: torch and keras are slow to
  # import); mkdocs build --strict checks their docstrings.
  for front_end in ("torch", "keras"):
    if (ROOT / "adaptive_optax" / f"{front_end}.py").exists():
      name = f"adaptive_optax.{front_end}.AdaptiveScheduler"
      assert name in listed, f"docs/api.md does not list {name}"
  # A listed module (e.g. adaptive_optax.presets) covers its functions.
  missing = [n for n in _public_api()
             if n not in listed and n.rsplit(".", 1)[0] not in listed]
  assert not missing, f"docs/api.md does not list {missing}"
