"""The notebooks run top to bottom under nbmake, each within its time limit."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # long or multi-process: CI runs it; -m 'not slow' skips it

pytest.importorskip("nbmake")
NOTEBOOK_DIR = pathlib.Path(__file__).parent.parent / "notebooks"
EXPECTED = ["hyperparameter_sweep", "porting_from_pytorch", "pytorch_and_keras",
            "quickstart", "reward_driven_rl"]
LIMIT_S = 60  # per notebook; each takes 5-20 s on 2 idle CPU cores


def test_the_notebooks_are_there():
  assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == EXPECTED


def test_notebooks_run_under_nbmake():
  # One nbmake session for all of them: one pytest start-up instead of one
  # each; with nbmake as its only plugin (the others, hypothesis, xdist...,
  # take a second to load and have nothing to do there).
  proc = subprocess.run(
      [sys.executable, "-m", "pytest", "-p", "nbmake", "--nbmake",
       f"--nbmake-timeout={LIMIT_S}", "-q", "-p", "no:cacheprovider",
       "-o", "addopts=", "-rA", str(NOTEBOOK_DIR)],
      capture_output=True, text=True, timeout=len(EXPECTED) * LIMIT_S + 60,
      cwd=NOTEBOOK_DIR,
      env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
  out = proc.stdout + proc.stderr
  assert proc.returncode == 0, out[-4000:]
  passed = sorted(re.findall(r"PASSED \S*?(\w+)\.ipynb", out))
  assert passed == EXPECTED, out[-2000:]
