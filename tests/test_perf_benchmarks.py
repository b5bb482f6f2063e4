"""The benchmark scripts run end to end and write their tables.

Benchmarks are scripts, never timed tests: here each one runs at tiny sizes
in a subprocess, and the table it writes is checked for its rows and for
figures that are positive numbers. No timing is asserted.
"""

import math
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCH)
import _timing  # noqa: E402  pylint: disable=wrong-import-position

# script, tiny arguments, a phrase every data row of its table must hold,
# the number of such rows, and the column that holds the timing figure.
SCRIPTS = {
    "overhead": (
        ["--sizes", "1000", "--optimizers", "sgd+momentum", "--rounds", "2",
         "--steps", "2"],
        "us/step (median)", 5),
    "host_sync": (["--models", "seed_demo", "--steps", "5", "--rounds", "1"],
                  "us/step (median)", 5),
    "controller_alone": (["--steps", "300", "--rounds", "1"],
                         "us/step (median)", 3),
    "sweeps": (["--ks", "2", "--steps", "8", "--rounds", "1", "--torch-runs",
                "1", "--torch-rounds", "1"], "config-steps/s", 4),
}


def first_table(text: str) -> tuple[list[str], list[list[str]]]:
  lines = [l for l in text.splitlines() if l.startswith("|")]
  rows = [[c.strip() for c in l.strip("|").split("|")] for l in lines]
  header, body = rows[0], [r for r in rows[2:]]
  # The first table ends where a row of another width (the next one) starts.
  body = [r for r in body if len(r) == len(header)]
  return header, body


def number(cell: str) -> float:
  match = re.match(r"[-+]?[\d,]*\.?\d+", cell)
  return float(match.group(0).replace(",", "")) if match else math.nan


@pytest.mark.slow  # a subprocess per script: CI runs it; -m 'not slow' skips it
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_writes_its_table(script, tmp_path):
  args, column, n_rows = SCRIPTS[script]
  out = tmp_path / f"{script}.md"
  proc = subprocess.run(
      [sys.executable, os.path.join(BENCH, f"{script}.py"), *args,
       "--out", str(out)],
      cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  text = out.read_text()
  assert text in proc.stdout  # printed as written
  header, rows = first_table(text)
  assert column in header
  assert len(rows) == n_rows
  figures = [number(r[header.index(column)]) for r in rows]
  assert all(math.isfinite(f) and f > 0 for f in figures), figures


@pytest.mark.parametrize("load, marked", [(0.1, False), (5.0, True)])
def test_report_marks_a_shared_machine(load, marked, tmp_path, monkeypatch):
  monkeypatch.setattr(_timing, "load_average", lambda: load)
  text = _timing.report("T", "body", str(tmp_path / "r.md"), load)
  assert ("(machine shared while measured)" in text.splitlines()[0]) is marked
  assert (tmp_path / "r.md").read_text() == text


@pytest.mark.parametrize("rounds", [1, 3, 4])
def test_rounds_rotate_the_order(rounds):
  order = []
  variants = {n: (lambda n=n: order.append(n) or 0.0) for n in "abc"}
  got = _timing.interleaved(variants, rounds)
  want = [x for r in range(rounds) for x in ("abc"[r % 3:] + "abc"[:r % 3])]
  assert order == want
  assert all(len(v) == rounds for v in got.values())
