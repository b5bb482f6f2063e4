"""MkDocs hook: serves the benchmark plots from benchmarks/results/ under results/.

The benchmark scripts write their plots next to their tables in benchmarks/results/; the docs
link them as ``results/<name>.png`` (relative to the page) instead of keeping a copy that could
go stale.
"""

import pathlib

from mkdocs.structure.files import File

_RESULTS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def on_files(files, config):
  for png in sorted(_RESULTS.glob("*.png")):
    files.append(File.generated(config, f"results/{png.name}", abs_src_path=str(png)))
  return files
