"""The benchmark scripts run end to end and write their tables.

Benchmarks are scripts, never timed tests: here each one runs at tiny sizes
as ``__main__`` (runpy), all of them one after another in ONE subprocess (one
Python, JAX and torch start-up for the four), and the table each writes is
checked for its rows and for figures that are positive numbers. No timing is
asserted.
"""

import json
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
         "--steps", "2", "--leaves", "2"],
        "us/step (median)", 6),
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


# Runs each script (argv[2]: JSON {script: args}) as `python SCRIPT ARGS`
# would: as __main__, with its own sys.argv, stdout and stderr, its folder
# first on sys.path (and not the current one, which `python -c` puts there),
# and the sys.path entries and the repository's modules that an earlier
# script added taken away again. One failing does not stop the others. Prints
# JSON {script: {rc, stdout, stderr}}.
_DRIVER = """
import contextlib, io, json, os, runpy, sys, traceback
bench, runs = sys.argv[1], json.loads(sys.argv[2])
root = os.path.dirname(bench)
report = {}
for name, args in runs.items():
  path = os.path.join(bench, name + ".py")
  saved_path, saved_modules = sys.path[:], set(sys.modules)
  sys.path[0] = bench
  sys.argv = [path, *args]
  out, err, rc = io.StringIO(), io.StringIO(), 0
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
      rc = e.code if isinstance(e.code, int) else int(e.code is not None)
    except BaseException:  # pylint: disable=broad-except
      traceback.print_exc()
      rc = 1
  report[name] = dict(rc=rc, stdout=out.getvalue(), stderr=err.getvalue())
  sys.path[:] = saved_path
  for module in set(sys.modules) - saved_modules:
    source = getattr(sys.modules[module], "__file__", None) or ""
    if source.startswith((bench + os.sep, os.path.join(root, "tests") + os.sep)):
      del sys.modules[module]
sys.__stdout__.write(json.dumps(report))
"""


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory):
  """{script: (return code, stdout, stderr, the table file)}, all in one process."""
  tmp = tmp_path_factory.mktemp("benchmarks")
  runs = {name: [*SCRIPTS[name][0], "--out", str(tmp / f"{name}.md")]
          for name in sorted(SCRIPTS)}
  proc = subprocess.run(
      [sys.executable, "-c", _DRIVER, BENCH, json.dumps(runs)],
      cwd=ROOT, capture_output=True, text=True, timeout=120 * len(runs),
      check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout)
  return {name: (r["rc"], r["stdout"], r["stderr"], tmp / f"{name}.md")
          for name, r in report.items()}


@pytest.mark.slow  # the scripts in a subprocess: CI runs it; -m 'not slow' skips it
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_writes_its_table(script, script_runs):
  _, column, n_rows = SCRIPTS[script]
  returncode, stdout, stderr, out = script_runs[script]
  assert returncode == 0, stderr[-3000:]
  text = out.read_text()
  assert text in stdout  # printed as written
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
