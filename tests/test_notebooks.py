"""The notebooks run top to bottom under nbmake, each within its time limit."""

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
  # One nbmake session for all four: one pytest start-up instead of four.
  proc = subprocess.run(
      [sys.executable, "-m", "pytest", "--nbmake", f"--nbmake-timeout={LIMIT_S}",
       "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-rA",
       str(NOTEBOOK_DIR)],
      capture_output=True, text=True, timeout=len(EXPECTED) * LIMIT_S + 60,
      cwd=NOTEBOOK_DIR)
  out = proc.stdout + proc.stderr
  assert proc.returncode == 0, out[-4000:]
  passed = sorted(re.findall(r"PASSED \S*?(\w+)\.ipynb", out))
  assert passed == EXPECTED, out[-2000:]
