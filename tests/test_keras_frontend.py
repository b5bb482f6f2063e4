"""adaptive_optax.keras.AdaptiveScheduler under model.fit, JAX and torch backends.

Keras picks its backend once per process (``KERAS_BACKEND``), so each backend
runs this file as a script in a subprocess (``python tests/test_keras_frontend.py
OUT.json``) that trains a few tiny models and writes what it saw; the tests
check that record against ``ao.simulate`` and against the optimizer's updates.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # long or multi-process: CI runs it; -m 'not slow' skips it

ROOT = pathlib.Path(__file__).resolve().parent.parent
BACKENDS = ("jax", "torch")
BATCH, STEPS = 8, 24  # batches per epoch
LR0, M0 = 0.05, 0.9
CONFIGS = {  # policy options per case (the seed's names)
    "stable": dict(mode="stable", var_window=5, patience=5, cooldown=5),
    "reference": dict(mode="reference", use_cosine=True, T0=10, patience=5,
                      cooldown=5),
    "reward": dict(mode="reference", var_window=5, momentum_max=0.95),
}


def loss_stream():
  """Per-batch losses, two epochs (the running mean restarts in between)."""
  from tests import _streams  # pylint: disable=g-import-not-at-top
  return _streams.loss_stream("trend", 2 * STEPS, seed=3)


# ---------------------------------------------------------------------------
# The script side: runs under one Keras backend.


def _known_loss_run(keras, AdaptiveScheduler, config, epochs_split=(2,),
                    tmp=None):
  """fit() on a loss whose value per batch is given: ``mean(y)`` of the batch.

  ``y`` is constant within a batch and the loss does not depend on the
  weights (zero gradients), so the loss stream fed to the controller is known
  exactly. Returns the LR (and momentum) logged after each batch. With
  ``epochs_split=(1, 1)`` training stops after one epoch, the model and the
  callback are saved and reloaded, and a second fit resumes.
  """
  losses = loss_stream()[:STEPS]
  y = np.repeat(losses, BATCH).astype("float32")[:, None]
  x = np.ones_like(y)

  def loss_fn(y_true, y_pred):
    return keras.ops.mean(y_true, axis=-1) + 0.0 * keras.ops.mean(y_pred, axis=-1)

  def reward_fn(y_true, y_pred):  # a compiled metric: the reward key
    return -keras.ops.mean(y_true, axis=-1)

  reward = "neg" if config is CONFIGS["reward"] else None
  kw = dict(config)
  model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])

  def compile_(m):
    m.compile(optimizer=keras.optimizers.SGD(LR0, momentum=M0), loss=loss_fn,
              metrics=[keras.metrics.MeanMetricWrapper(reward_fn, name="neg")],
              run_eagerly=reward is not None)

  compile_(model)
  cb = AdaptiveScheduler(reward=reward, **kw)
  seen = []

  class Record(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      seen.append([logs["learning_rate"], logs.get("momentum", np.nan),
                   float(keras.ops.convert_to_numpy(
                       self.model.optimizer.learning_rate)),
                   float(self.model.optimizer.momentum)])

  for i, epochs in enumerate(epochs_split):
    if i > 0:  # resume in "another process": reload model and callback
      model.save(tmp / "model.keras")
      cb.save(tmp / "sched.npz")
      model = keras.models.load_model(tmp / "model.keras", compile=False)
      compile_(model)
      cb = AdaptiveScheduler.load(tmp / "sched.npz")
    hist = model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False,
                     verbose=0, callbacks=[cb, Record()])
  return dict(seen=seen, history_lr=hist.history["learning_rate"])


def _applied_lr_run(keras, AdaptiveScheduler):
  """A weight whose gradient is 1 each step: w moves by exactly -LR."""
  x = np.ones((STEPS * BATCH, 1), "float32")
  model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(
      1, use_bias=False, kernel_initializer="zeros")])
  model.compile(optimizer=keras.optimizers.SGD(LR0),
                loss=lambda y_true, y_pred: keras.ops.mean(y_pred, axis=-1))
  w, rates = [], []

  class Record(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      w.append(float(keras.ops.convert_to_numpy(self.model.weights[0])[0, 0]))
      rates.append(logs["learning_rate"])

  model.fit(x, x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
            callbacks=[AdaptiveScheduler(var_window=5), Record()])
  return dict(w=w, rates=rates)


def script(out_path):
  import tempfile  # pylint: disable=g-import-not-at-top
  # First, while nothing has imported keras: importing our module must not.
  from adaptive_optax import keras as ao_keras  # pylint: disable=g-import-not-at-top
  module_imported_keras = "keras" in sys.modules
  import keras  # pylint: disable=g-import-not-at-top
  AdaptiveScheduler = ao_keras.AdaptiveScheduler
  result = {"backend": keras.backend.backend(),
            "module_imported_keras": module_imported_keras}
  for name, config in CONFIGS.items():
    result[name] = _known_loss_run(keras, AdaptiveScheduler, config)
  with tempfile.TemporaryDirectory() as tmp:
    result["resumed"] = _known_loss_run(keras, AdaptiveScheduler,
                                        CONFIGS["stable"], (1, 1),
                                        pathlib.Path(tmp))
  result["applied"] = _applied_lr_run(keras, AdaptiveScheduler)
  pathlib.Path(out_path).write_text(json.dumps(result))


# ---------------------------------------------------------------------------
# The test side.


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  """Both backends' records; the two subprocesses run side by side."""
  # Not importorskip: importing keras here would pick this process's backend.
  if importlib.util.find_spec("keras") is None:
    pytest.skip("keras is not installed")
  backends = [b for b in BACKENDS if importlib.util.find_spec(b) is not None]
  out = tmp_path_factory.mktemp("keras")
  procs = {}
  for backend in backends:
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT),
                                           os.environ.get("PYTHONPATH", "")]))
    procs[backend] = subprocess.Popen(
        [sys.executable, __file__, str(out / f"{backend}.json")], env=env,
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  results = {}
  for backend, proc in procs.items():
    _, err = proc.communicate(timeout=300)
    results[backend] = (proc.returncode, err)
  return out, results


@pytest.fixture(params=BACKENDS)
def record(request, records):
  out, results = records
  if request.param not in results:
    pytest.skip(f"{request.param} is not installed")
  rc, err = results[request.param]
  assert rc == 0, err[-4000:]
  result = json.loads((out / f"{request.param}.json").read_text())
  assert result["backend"] == request.param
  return result


def simulate(name):
  import jax  # pylint: disable=g-import-not-at-top
  import adaptive_optax as ao  # pylint: disable=g-import-not-at-top
  config = dict(CONFIGS[name])
  losses = np.tile(loss_stream()[:STEPS], 2)
  kw = {}
  if name == "reward":
    kw = dict(rewards=-losses, use_reward=True)
  with jax.enable_x64(True):
    out = ao.simulate(losses, learning_rate=LR0, momentum=M0, **kw, **config)
    return np.asarray(out["learning_rate"]), np.asarray(out["momentum"])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_lr_trajectory_equals_simulate(record, name):
  seen = np.array(record[name]["seen"])
  lr, momentum = simulate(name)
  # Keras's running means are float32: the recovered batch losses carry
  # relative errors of about k * 6e-8 after batch k.
  np.testing.assert_allclose(seen[:, 0], lr, rtol=1e-5)
  np.testing.assert_allclose(seen[:, 1], momentum, rtol=1e-5)
  # The optimizer holds the logged rate (as float32).
  np.testing.assert_allclose(seen[:, 2], seen[:, 0], rtol=1e-6)
  # History sees it too, once per epoch.
  np.testing.assert_allclose(record[name]["history_lr"],
                             seen[[STEPS - 1, -1], 0], rtol=1e-12)


def test_momentum_attribute_follows_the_controller(record):
  seen = np.array(record["reward"]["seen"])
  _, momentum = simulate("reward")
  assert not np.allclose(momentum, M0)  # the reward rule moved it
  # run_eagerly=True: the optimizer's attribute follows the controller.
  np.testing.assert_allclose(seen[:, 3], momentum, rtol=1e-5)


def test_resume_from_saved_callback_equals_one_run(record):
  whole = np.array(record["stable"]["seen"])
  resumed = np.array(record["resumed"]["seen"])
  np.testing.assert_array_equal(resumed[:, :2], whole[:, :2])


def test_rate_reaches_the_optimizer_every_batch(record):
  w = np.array(record["applied"]["w"])
  rates = np.array(record["applied"]["rates"])
  steps = -np.diff(np.concatenate([[0.0], w]))
  # Batch k is updated with the rate set after batch k - 1 (LR0 at first).
  applied = np.concatenate([[LR0], rates[:-1]])
  np.testing.assert_allclose(steps, applied, rtol=1e-5)
  assert np.ptp(applied) > 0.01 * LR0  # the rate moved, so this can fail


def test_importing_the_module_does_not_import_keras(request):
  if importlib.util.find_spec("keras") is not None:
    # Checked first thing in each backend's process (the records), before
    # it imports keras: no process of its own to start.
    out, results = request.getfixturevalue("records")
    for backend, (rc, err) in results.items():
      assert rc == 0, err[-4000:]
      result = json.loads((out / f"{backend}.json").read_text())
      assert result["module_imported_keras"] is False, backend
    return
  code = ("import sys, adaptive_optax.keras; "
          "assert 'keras' not in sys.modules")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                        text=True, timeout=120, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr_min=1.0, lr_max=0.1), "lr_min must not exceed lr_max"),
    (dict(mode="fast"), "mode must be one of"),
    (dict(loss_beta=1.5), "loss_beta"),
])
def test_bad_hyperparameters_are_refused_at_construction(kwargs, match):
  # Checked before keras is imported, so no backend is needed here.
  from adaptive_optax.keras import AdaptiveScheduler  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=match):
    AdaptiveScheduler(**kwargs)
  with pytest.raises(TypeError, match="reward=<logs key>"):
    AdaptiveScheduler(use_reward=True)


if __name__ == "__main__":
  script(sys.argv[1])
