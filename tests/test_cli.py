"""The adaptive-optax command: demo, simulate, and one-line errors."""

import csv
import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import adaptive_optax as ao
from adaptive_optax import cli
from tests import _streams

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N = 80


@pytest.fixture
def losses_csv(tmp_path):
  path = tmp_path / "losses.csv"
  values = _streams.loss_stream("plateau", N)
  path.write_text("loss\n" + "\n".join(repr(float(v)) for v in values) + "\n")
  return path, values


def test_demo_trains_three_ways_prints_a_table_and_writes_a_png(tmp_path,
                                                                capsys):
  out = tmp_path / "demo.png"
  assert cli.main(["demo", "--steps", "24", "--out", str(out), "--quiet"]) == 0
  stdout = capsys.readouterr().out
  rows = [l for l in stdout.splitlines() if l.startswith("| ")][1:]
  assert [r.split("|")[1].strip() for r in rows] == [
      "adaptive_scale", "fixed LR", "reduce_on_plateau"]
  assert out.read_bytes()[:8] == PNG_MAGIC


def test_simulate_writes_the_metrics_of_ao_simulate(tmp_path, losses_csv,
                                                    capsys):
  path, values = losses_csv
  config = tmp_path / "cfg.json"
  config.write_text(json.dumps({"preset": "conservative", "var_window": 5}))
  metrics, plot = tmp_path / "m.csv", tmp_path / "p.png"
  assert cli.main(["simulate", "--config", str(config), "--losses", str(path),
                   "--out", str(metrics), "--plot", str(plot)]) == 0
  with metrics.open() as f:
    rows = list(csv.DictReader(f))
  want = jax.jit(lambda l: ao.simulate(l, **ao.presets.conservative,
                                       var_window=5))(values)
  np.testing.assert_allclose([float(r["scale"]) for r in rows], want["scale"],
                             rtol=1e-6)
  assert len(rows) == N
  assert plot.read_bytes()[:8] == PNG_MAGIC
  assert f"{N} steps" in capsys.readouterr().out


def test_simulate_reads_rewards(tmp_path, losses_csv):
  path, _ = losses_csv
  rewards = tmp_path / "r.csv"
  rewards.write_text("\n".join(str(float(r)) for r in
                               _streams.reward_stream(N)))
  metrics = tmp_path / "m.csv"
  assert cli.main(["simulate", "--losses", str(path), "--rewards",
                   str(rewards), "--preset", "rl", "--out", str(metrics)]) == 0
  assert len(metrics.read_text().splitlines()) == N + 1


BAD = {
    "missing losses": (["simulate", "--losses", "{d}/nope.csv"], "nope.csv"),
    "bad csv": (["simulate", "--losses", "{d}/bad.csv"], "line 3"),
    "two columns": (["simulate", "--losses", "{d}/wide.csv"], "line 1"),
    "unknown config key": (["simulate", "--losses", "{d}/ok.csv", "--config",
                            "{d}/cfg.yaml"], "patiense"),
    "bad preset": (["demo", "--preset", "fast", "--steps", "2"], "fast"),
    "reward count": (["simulate", "--losses", "{d}/ok.csv", "--rewards",
                      "{d}/bad_r.csv"], "1 rewards for 2 losses"),
    "missing folder": (["demo", "--out", "{d}/no/such/dir/x.png"], "no/such"),
}


@pytest.fixture
def bad_inputs(tmp_path):
  (tmp_path / "bad.csv").write_text("loss\n1.0\nabc\n")
  (tmp_path / "wide.csv").write_text("1.0,2.0\n")
  (tmp_path / "ok.csv").write_text("1.0\n0.9\n")
  (tmp_path / "bad_r.csv").write_text("1.0\n")
  (tmp_path / "cfg.yaml").write_text("patiense: 3\n")
  return tmp_path


@pytest.mark.parametrize("case", sorted(BAD))
def test_errors_are_one_line_and_exit_nonzero(bad_inputs, capsys, case):
  argv, needle = BAD[case]
  argv = [a.format(d=bad_inputs) for a in argv]
  assert cli.main(argv) != 0
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("adaptive-optax: error:")
  assert needle in err


def test_console_script_errors_without_traceback(tmp_path):
  exe = shutil.which("adaptive-optax") or shutil.which(
      "adaptive-optax", path=str(sys.executable).rsplit("/", 1)[0])
  assert exe, "the console script is not installed (pip install -e .)"
  proc = subprocess.run([exe, "simulate", "--losses", str(tmp_path / "x.csv")],
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines() == [
      f"adaptive-optax: error: {tmp_path / 'x.csv'}: losses file not found."]


def test_bad_command_line_is_one_line(capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.main(["demo", "--steps", "many"])
  assert exit_.value.code == 2
  assert capsys.readouterr().err.count("\n") == 1
