"""One controller, eight devices: pmap, NamedSharding jit and shard_map.

The devices are fake CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``), which must be set
before JAX starts, so tests/multihost/fake_devices.py runs once in a
subprocess and reports measured differences; each test reads one of them.
Its inputs (the toy data, initial parameters, batch order) are generated
here and handed to it in a file.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests import conftest
from tests.multihost import fake_devices

pytestmark = pytest.mark.slow  # long or multi-process: CI runs it; -m 'not slow' skips it

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "multihost" / "fake_devices.py"
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  inputs = tmp_path_factory.mktemp("fake_devices") / "inputs.npz"
  fake_devices.save_inputs(inputs)
  flags = "--xla_force_host_platform_device_count=8"
  # Not the suite's cheaper back end: the tests below compare the pmap
  # program and a one-device replay bitwise, which holds for XLA's default
  # code generation (at -O0 they differ by 2e-9). The legacy fusion emitters,
  # where the suite uses them, compile it faster (16 s against 21 s) with
  # the same measured differences.
  if conftest.LEGACY_EMITTERS in conftest.SUITE_XLA_FLAGS:
    flags += " " + conftest.LEGACY_EMITTERS
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
         "XLA_FLAGS": flags}
  proc = subprocess.run([sys.executable, str(SCRIPT), f"--inputs={inputs}"],
                        env=env, cwd=ROOT, capture_output=True, text=True,
                        timeout=TIMEOUT_S)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_pmap_runs_on_eight_devices_with_different_losses(report):
  r = report["pmap"]
  assert r["devices"] == 8 and r["steps"] == 500
  assert r["loss_spread_across_devices"] > 0.1  # the shards really differ


def test_pmap_with_axis_name_keeps_controller_identical_on_every_device(report):
  """Bitwise, at each of the 500 steps, as are the parameters."""
  r = report["pmap"]
  assert r["with_axis_state_spread"] == 0.0
  assert r["with_axis_param_spread"] == 0.0


def test_pmap_with_axis_name_equals_one_device_fed_the_mean_loss(report):
  """Replaying the all-reduced losses on one device gives the same states."""
  assert report["pmap"]["with_axis_vs_replay_max_abs"] == 0.0


def test_pmap_with_axis_name_equals_single_device_training(report):
  """One device on the union of the shards: the same decision at each of the
  500 steps; values differ by float32 summation order only (amplified by 500
  steps of training, hence 1e-3)."""
  r = report["pmap"]
  assert r["with_axis_vs_single_decisions_differ"] == 0
  assert r["with_axis_vs_single_rate_max_rel"] < 1e-3
  assert r["with_axis_vs_single_params_max_abs"] < 1e-3
  assert r["with_axis_lr_max"] / r["with_axis_lr_min"] > 2  # it did adapt


def test_pmap_without_axis_name_replicas_drift_apart(report):
  """Documented behaviour: each device adapts to its own shard's loss."""
  r = report["pmap"]
  assert r["without_axis_state_spread"] > 0
  assert r["without_axis_steps_lr_differs"] > 0.9 * r["steps"]
  assert r["without_axis_max_lr_ratio"] > 1.1
  assert r["without_axis_param_spread"] > 1e-3


@pytest.mark.parametrize("how", ["named_sharding", "shard_map"])
def test_no_recompilation_across_steps(report, how):
  r = report[how]
  assert r["mesh"] in ({"model": 8}, {"batch": 8})
  assert r["steps"] >= 30
  assert r["recompilations"] == 0


@pytest.mark.parametrize("how", ["named_sharding", "shard_map"])
def test_state_sharding_is_unchanged_by_updates(report, how):
  assert report[how]["sharding_changes"] == 0


def test_named_sharding_keeps_controller_replicated(report):
  r = report["named_sharding"]
  assert r["controller_replicated"]
  assert r["controller_devices"] == 8


@pytest.mark.parametrize("how", ["named_sharding", "shard_map"])
def test_sharded_run_equals_single_device_run(report, how):
  r = report[how]
  assert r["params_max_abs_vs_single"] < 1e-5
  assert r["controller_max_rel_vs_single"] < 1e-4


def test_shard_map_without_axis_name_refuses_replicated_state(report):
  """Per-shard losses make the state device-varying: shard_map says so."""
  assert "replication" in report["shard_map"]["without_axis_error"]
