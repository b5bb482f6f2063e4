"""Shared fixtures: the two semantics, and small helpers to drive a transform."""

import os
import pathlib
import subprocess
import sys

# Most of the suite's time is XLA compiling the same controller programs again
# (in each test, each xdist worker, each notebook and script subprocess): a
# persistent compilation cache shared by all of them compiles each once. Set
# before jax is imported; subprocesses inherit it. Keyed by the program and
# the jax/XLA versions, so a stale entry is never reused.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    str(pathlib.Path(__file__).resolve().parents[1] / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# The tests check what the programs compute, not how fast the compiled code
# runs, and each program runs for a few thousand steps at most: a cheaper
# LLVM back end cuts the suite's CPU time by about a fifth. Users' programs
# compile with XLA's defaults; the benchmark scripts run without this when
# invoked directly. Appended, so a caller's XLA_FLAGS are kept.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0"
                      " --xla_llvm_disable_expensive_passes=true")
# XLA:CPU's newer fusion emitters take about twice as long to compile the
# controller's step as the legacy ones (0.55 s against 0.29 s with jaxlib
# 0.10.2; the suite's CPU time 10:17 against 7:00 on a cold cache). A flag
# XLA does not know aborts the process, and this one may go with the legacy
# emitters: it is added only if a probe process accepts it.
LEGACY_EMITTERS = "--xla_cpu_use_fusion_emitters=false"


def _xla_accepts(flags):
  probe = "import jax; jax.jit(lambda x: x + 1)(1.0).block_until_ready()"
  env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
  try:
    return subprocess.run([sys.executable, "-c", probe], env=env,
                          capture_output=True, timeout=120,
                          check=False).returncode == 0
  except subprocess.TimeoutExpired:
    return False


# Set once, in the first process (xdist's workers and the tests' subprocesses
# inherit it).
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  _flags = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE_FLAGS).strip()
  if _xla_accepts(_flags + " " + LEGACY_EMITTERS):
    _flags += " " + LEGACY_EMITTERS
  os.environ["XLA_FLAGS"] = _flags
# What the suite compiles with (a test's own processes start from it).
SUITE_XLA_FLAGS = os.environ["XLA_FLAGS"]

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position

MODES = ("stable", "reference")


def _long_run_options():
  """XLA's optimizing back end for one program, if this jaxlib takes the
  option per compile (else the suite's flags)."""
  options = {"xla_backend_optimization_level": 2,
             "xla_llvm_disable_expensive_passes": False}
  try:
    jax.jit(lambda x: x + 1, compiler_options=options)(1.0).block_until_ready()
  except Exception:  # pylint: disable=broad-except
    return {}
  return options


# The suite compiles with FAST_COMPILE_FLAGS, which is right for programs
# that run a few hundred steps. A program that runs long (10,000-step loss
# streams, vmapped) spends its time running: there the unoptimized code is
# ~30x slower (15 streams x 10,000 steps of ao.simulate: 2.9 s against 0.09
# s, for the same ~1.4 s of compile). jit_long compiles such a program with
# XLA's optimizing back end, the suite's other programs keep the fast flags.
LONG_RUN_OPTIONS = _long_run_options()


def jit_long(fun, **kwargs):
  """``jax.jit`` for a program that runs long (see LONG_RUN_OPTIONS)."""
  return jax.jit(fun, compiler_options=LONG_RUN_OPTIONS or None, **kwargs)

# The longest files first (roughly by CPU time on a cold cache): with `-n 2
# --dist loadfile` each file runs on one worker, and one of these left for the
# end would leave the other core idle. xdist hands the files out in this order
# only without its own reordering (see pytest_configure).
_LONGEST_FIRST = ("test_notebooks.py", "test_null_evidence.py",
                  "test_docs_snippets.py", "test_drift.py",
                  "test_stable_semantics.py", "test_keras_frontend.py",
                  "test_transform_jax.py", "test_multidevice.py",
                  "test_optax_battery.py", "test_long_runs.py",
                  "test_quality_benchmark.py", "test_perf_benchmarks.py",
                  "test_nonfinite.py", "test_hostile_inputs.py",
                  "test_distributed.py", "test_rl_benchmark.py",
                  "test_orbax.py", "test_torch_frontend.py",
                  "test_serialization.py", "test_cli.py",
                  "test_lm_benchmark.py", "test_reference_parity.py",
                  "test_simulate.py")


def pytest_configure(config):
  # xdist >= 3.8 hands the files out by decreasing number of tests unless
  # --no-loadscope-reorder is given; that put test_notebooks.py (two tests,
  # the longest file) among the last. Set here, not in addopts, so that an
  # older xdist (no such option) still runs the suite.
  if hasattr(config.option, "loadscopereorder"):
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
  del config
  rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(params=MODES)
def mode(request):
  return request.param


def run_updates(tx, losses, params=None, rewards=None):
  """Feeds ``losses`` through ``tx`` under one jitted scan; returns states."""
  params = jnp.ones(3) if params is None else params
  state = tx.init(params)

  def body(state, xs):
    loss, reward = xs
    kw = {} if rewards is None else {"reward": reward}
    _, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params,
                         value=loss, **kw)
    return state, state

  rs = jnp.zeros_like(losses) if rewards is None else rewards
  # The streams are arguments, not constants: streams of one shape share one
  # compiled program.
  run = jax.jit(lambda s, l, r: jax.lax.scan(body, s, (l, r)))
  return run(state, losses, rs)
