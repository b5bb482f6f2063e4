"""The quality benchmark script runs end to end at CI size.

The full suite is a script, not a test (about 15 minutes); this runs its
``--quick`` mode once into a temporary folder and checks what it wrote.
"""

import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # long or multi-process: CI runs it; -m 'not slow' skips it

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "quality.py"
COLUMNS = ("fixed", "best fixed", "cosine", "plateau", "plateau~",
           "reference", "ours", "prodigy", "dog", "schedule-free")
STARTS = ("good", "100x low", "10x high")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("quality")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, str(SCRIPT), "--quick", "--horizon", "--out", str(out)],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return out


def _rows(md):
  """{(task, start): {column: cell}} from the (first) markdown table."""
  lines = []
  for l in md.splitlines():
    if l.startswith("|"):
      lines.append(l)
    elif lines:
      break
  header = [c.strip() for c in lines[0].strip("|").split("|")]
  rows = {}
  for line in lines[2:]:
    cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
    rows[(cells[0], cells[1])] = dict(zip(header[2:], cells[2:]))
  return header, rows


def test_table_has_every_column_and_start(quick_run):
  header, rows = _rows((quick_run / "quality.md").read_text())
  assert tuple(header[2:]) == COLUMNS
  for start in STARTS:
    assert ("seed_demo", start) in rows
  assert ("median", "all") in rows and ("worst", "all") in rows


@pytest.mark.parametrize("start", STARTS)
def test_every_cell_is_a_finite_ratio_or_div(quick_run, start):
  _, rows = _rows((quick_run / "quality.md").read_text())
  for column, cell in rows[("seed_demo", start)].items():
    if cell == "div":
      continue
    value = float(cell)
    assert math.isfinite(value) and value > 0, (column, cell)


def test_best_fixed_column_is_at_least_one(quick_run):
  # Scores are ratios to the best grid point of the same seed: the single
  # best grid LR across seeds cannot beat each seed's own best.
  _, rows = _rows((quick_run / "quality.md").read_text())
  assert float(rows[("seed_demo", "good")]["best fixed"]) >= 1.0 - 1e-9


def test_goals_are_reported(quick_run):
  md = (quick_run / "quality.md").read_text()
  goals = re.findall(r"-> (PASS|FAIL)", md)
  assert len(goals) == 5


def test_plot_is_written(quick_run):
  png = quick_run / "quality_seed_demo.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_horizon_section_runs_ours_told_the_length(quick_run):
  """``--horizon``: ours again with ``total_steps`` the run's length. Its
  ``ours`` cells are the main table's; its own differ from them where the
  final decay (the run's last fifth) moved the final loss."""
  md = (quick_run / "quality.md").read_text()
  _, main = _rows(md)
  _, horizon = _rows(md.split("## With the horizon given")[1])
  told = []
  for start in STARTS:
    row = horizon[("seed_demo", start)]
    assert row["ours"] == main[("seed_demo", start)]["ours"], (start, row)
    told.append(row["ours, `total_steps` given"])
    assert told[-1] == "div" or float(told[-1]) > 0, (start, told[-1])
  assert any(t != main[("seed_demo", s)]["ours"] for t, s in zip(told, STARTS))


TRACE = ROOT / "benchmarks" / "trace.py"


def _trace(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, str(TRACE), *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=120)


def test_trace_prints_the_chosen_fields_every_few_steps():
  proc = _trace("cyclic_linreg", "--steps", "40", "--every", "20",
                "--fields", "stored_rate,warmup")
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  assert lines[0] == "step value stored_rate warmup"
  rows = [l.split() for l in lines[1:-1]]
  assert [r[0] for r in rows] == ["0", "20"]
  # After the first update the decided rate is the probe's first rung,
  # the given rate over probe_growth, and the warm-up is under way.
  assert float(rows[0][2]) == 0.5 and float(rows[0][3]) < 1
  assert lines[-1].startswith("score ") and math.isfinite(
      float(lines[-1].split()[1]))


def test_trace_refuses_holdout_tasks_and_unknown_fields():
  proc = _trace("iris_tiny")
  assert proc.returncode == 2 and "not a tune task" in proc.stderr
  proc = _trace("seed_demo", "--fields", "nope")
  assert proc.returncode == 2 and "unknown --fields ['nope']" in proc.stderr
