"""Two JAX processes over 127.0.0.1 train as one (CPU collectives, gloo).

tests/multihost/data_parallel.py runs in each process; the processes feed
different halves of each batch and must end with the parameters and
controller state of the single-process run, which a third process computes
at the same time (from the same sources). The batches are generated once,
here, and read by the three processes.
"""

import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests import conftest
from tests.multihost import data_parallel  # its constants and batches

pytestmark = pytest.mark.slow  # long or multi-process: CI runs it; -m 'not slow' skips it

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "multihost" / "data_parallel.py"
NUM_PROCESSES = 2
TIMEOUT_S = 120


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  out = tmp_path_factory.mktemp("distributed")
  # One device per process (no forced device count), compiled as the rest.
  env = {**os.environ, "XLA_FLAGS": conftest.SUITE_XLA_FLAGS}
  env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  port = _free_port()
  batches = out / "batches.npz"
  data_parallel.save_batches(batches)
  commands = [[str(port), str(NUM_PROCESSES), str(i), str(out / f"{i}.npz"),
               str(batches)] for i in range(NUM_PROCESSES)]
  commands.append(["reference", str(out / "reference.npz"), str(batches)])
  procs = [subprocess.Popen(
      [sys.executable, str(SCRIPT), *args], env=env, cwd=ROOT,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for args in commands]
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=TIMEOUT_S)[0])
  except subprocess.TimeoutExpired:
    for p in procs:
      p.kill()
    pytest.fail(f"the processes did not finish in {TIMEOUT_S} s")
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  workers = [dict(np.load(out / f"{i}.npz")) for i in range(NUM_PROCESSES)]
  return workers, dict(np.load(out / "reference.npz"))


def _f64(tree):
  return {k: np.asarray(v, np.float64) for k, v in tree.items()}


def test_every_process_ends_with_identical_params_and_controller(results):
  workers, _ = results
  first = workers[0]
  assert len(workers) == NUM_PROCESSES
  assert len(first) > 20  # the 4 parameter arrays and the controller's leaves
  for other in workers[1:]:
    assert other.keys() == first.keys()
    for k in first:
      np.testing.assert_array_equal(other[k], first[k], err_msg=k)


def test_processes_equal_the_single_process_run(results):
  workers, reference = results
  want, got = _f64(reference), _f64(workers[0])
  assert got.keys() == want.keys()
  assert int(got["[1].num_steps"]) == data_parallel.STEPS
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-6,
                               err_msg=k)
