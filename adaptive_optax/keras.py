"""A Keras 3 callback setting the learning rate from the loss (the one policy).

::

  from adaptive_optax.keras import AdaptiveScheduler

  model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
  model.fit(x, y, callbacks=[AdaptiveScheduler()])

After each batch the callback feeds the batch's loss to the library's one
controller (:mod:`adaptive_optax._policy`, float64 on the host CPU), sets
``model.optimizer.learning_rate`` (and ``momentum``, see below) and writes
``learning_rate`` into the logs, so ``History`` and ``TensorBoard`` see it.

Why a callback and not a ``keras.optimizers.schedules.LearningRateSchedule``
(the form the seed's roadmap names): a schedule is a function of the step
count alone, traced into the compiled train step; it never sees the loss. A
callback is Keras's form for metric-driven rates (as
``keras.callbacks.ReduceLROnPlateau``).

Needs the ``keras`` extra (``pip install 'adaptive_optax[keras]'``) and works
with every Keras backend. Keras is imported when the first
:class:`AdaptiveScheduler` is made, so importing this module (or
``adaptive_optax``) never imports it, and ``KERAS_BACKEND`` may be chosen
until then.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from adaptive_optax import _host

__all__ = ("AdaptiveScheduler",)

_FORMAT = "adaptive_optax.keras.AdaptiveScheduler/1"


class AdaptiveScheduler:
  """Sets the optimizer's learning rate after every batch from its loss.

  The starting rate is the optimizer's (``SGD(learning_rate=0.05)``): give it
  a float, not a schedule. The controller's state lives in the callback and
  survives consecutive ``fit`` calls; to resume in another process, save it
  with :meth:`save` and restore it with :meth:`load` (``model.save`` does not
  save callbacks).

  **The loss it reads.** Keras 3 reports a batch's ``logs["loss"]`` as the
  running mean over the epoch so far, weighted by batch size. With
  ``running_mean=True`` (the default) the callback recovers the mean of the
  batches since its last call, ``(k m_k - j m_j) / (k - j)`` after batch
  ``k`` (``j``: the previous call), which is each batch's own loss (or the
  mean of the ``steps_per_execution`` batches run together); it is exact
  when the batches have equal sizes (the last, shorter batch of an epoch is
  weighted slightly off). Pass ``running_mean=False`` for a logs key that
  already holds per-batch values (written by your own callback listed
  before this one).

  **Momentum.** With ``use_reward=True`` the reward rule also moves momentum.
  The callback drives the optimizer's ``momentum`` attribute when it is a
  number > 0 (Keras's SGD and RMSprop build momentum slots only then).
  Keras optimizers read ``momentum`` as a Python float, so a compiled train
  step (the JAX backend, or ``jit_compile=True``) keeps the value it was
  traced with: a driven momentum takes effect there only with
  ``run_eagerly=True`` (the torch backend runs eagerly by default). The
  callback warns when that is the case. Logs get ``momentum`` either way.

  **Cost.** One host-side controller step per batch (tens of microseconds).
  On the JAX backend, setting the rate makes Keras write its training state
  back into the model's variables after every batch (``jax_state_sync``):
  a reference swap per variable, no copy of the weights.

  Args:
    monitor: the logs key of the loss (default ``"loss"``).
    reward: a logs key of the reward (e.g. a compiled metric's name), or
      ``None``; given, it turns on the reward rule (``use_reward=True``).
    mode: ``"stable"`` (default) or ``"reference"`` (the seed's semantics).
    running_mean: undo Keras's epoch running mean (see above).
    **policy: the seed's hyperparameters by the seed's names
      (``up_factor``, ``patience``, ``use_cosine``, ``lr_min``...), checked
      here.

  Raises:
    ValueError: naming the first invalid hyperparameter; at the start of
      training, when the optimizer's learning rate is a schedule.

  Example (needs a Keras backend, so not run as a doctest)::

    import keras
    from adaptive_optax.keras import AdaptiveScheduler

    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    cb = AdaptiveScheduler(patience=30)
    history = model.fit(x, y, epochs=5, callbacks=[cb])
    history.history["learning_rate"]     # the rate at each epoch's end
    cb.save("sched.npz")                 # with model.save(...), to resume:
    cb = AdaptiveScheduler.load("sched.npz")
  """

  def __new__(cls, monitor: str = "loss", reward: str | None = None, *,
              mode: str = "stable", running_mean: bool = True, **policy):
    del monitor, running_mean
    _options(reward, mode, policy)  # refuse bad values before importing keras
    # Instances are of a subclass that adds keras.callbacks.Callback as a
    # base, made on first use: importing this module never imports keras.
    return super().__new__(_with_keras_base(cls))

  def __init__(self, monitor: str = "loss", reward: str | None = None, *,
               mode: str = "stable", running_mean: bool = True, **policy):
    super().__init__()
    options = _options(reward, mode, policy)
    self.monitor = monitor
    self.reward = reward
    self.running_mean = bool(running_mean)
    self._options = options
    self._controller: _host.HostController | None = None
    self._last_mean: dict[str, tuple[int, float]] = {}

  # ---- state ----

  def _make_controller(self, rate: float, momentum: float | None):
    hp, cfg = _host.build(self._options, "AdaptiveScheduler")
    self._controller = _host.HostController(
        hp, cfg, [rate], None if momentum is None else [momentum])

  def state_dict(self) -> dict[str, Any]:
    """Options and controller state: numpy arrays and a JSON string."""
    if self._controller is None:
      raise ValueError("AdaptiveScheduler has no state before training starts.")
    meta = dict(format=_FORMAT, options=self._options, monitor=self.monitor,
                reward=self.reward, running_mean=self.running_mean,
                has_momentum=self._controller.cfg.has_momentum)
    arrays = {f"state.{k}": v for k, v in self._controller.arrays().items()}
    return {"meta": np.asarray(json.dumps(meta)), **arrays}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    """Restores :meth:`state_dict` (options included)."""
    meta = json.loads(str(np.asarray(state["meta"])))
    if meta.get("format") != _FORMAT:
      raise ValueError(f"not an {_FORMAT} state: "
                       f"format={meta.get('format')!r}.")
    self.monitor, self.reward = meta["monitor"], meta["reward"]
    self.running_mean = meta["running_mean"]
    self._options = meta["options"]
    # Starting values are placeholders: the loaded state replaces them.
    self._make_controller(1.0, 0.0 if meta["has_momentum"] else None)
    self._controller.load_arrays({k[len("state."):]: np.asarray(v)
                                  for k, v in state.items()
                                  if k.startswith("state.")})

  def save(self, path) -> None:
    """Writes :meth:`state_dict` to ``path`` (``.npz``)."""
    np.savez(path, **self.state_dict())

  @classmethod
  def load(cls, path) -> AdaptiveScheduler:
    """A callback restored from :meth:`save`, ready to resume training."""
    with np.load(path) as data:
      state = {k: data[k] for k in data.files}
    cb = cls()
    cb.load_state_dict(state)
    return cb

  @property
  def learning_rate(self) -> float | None:
    """The rate the controller applies next (``None`` before training)."""
    return None if self._controller is None else self._controller.rates[0]

  # ---- Keras hooks ----

  def on_train_begin(self, logs=None):
    import keras  # pylint: disable=g-import-not-at-top
    opt = self.model.optimizer
    if isinstance(getattr(opt, "_learning_rate", None),
                  keras.optimizers.schedules.LearningRateSchedule):
      raise ValueError(
          "AdaptiveScheduler sets the learning rate itself: compile the model "
          "with an optimizer whose learning_rate is a float (the starting "
          "rate), not a LearningRateSchedule.")
    momentum = getattr(opt, "momentum", None)
    driven = (isinstance(momentum, (int, float)) and not isinstance(
        momentum, bool) and momentum > 0)
    if self._controller is None:
      rate = float(keras.ops.convert_to_numpy(opt.learning_rate))
      _host.check_start("the optimizer's", rate,
                        float(momentum) if driven else None)
      self._make_controller(rate, float(momentum) if driven else None)
    self._drive_momentum = driven and self._controller.cfg.has_momentum
    if (self._drive_momentum and self._options["use_reward"]
        and not self.model.run_eagerly and keras.backend.backend() != "torch"):
      import warnings  # pylint: disable=g-import-not-at-top
      warnings.warn(
          "AdaptiveScheduler drives momentum (reward rule), but Keras compiles "
          "the optimizer's momentum into the train step as a constant: "
          "compile with run_eagerly=True for it to take effect.", stacklevel=2)
    self._write(opt)

  def on_epoch_begin(self, epoch, logs=None):
    self._last_mean = {}  # Keras restarts its running means every epoch

  def on_train_batch_end(self, batch, logs=None):
    logs = logs if logs is not None else {}
    loss = self._batch_value(self.monitor, batch, logs)
    reward = (math.nan if self.reward is None
              else self._batch_value(self.reward, batch, logs))
    self._controller.step(loss, reward)
    sync = getattr(self.model, "jax_state_sync", None)
    if sync is not None:
      # The JAX trainer carries the optimizer's variables between batches
      # outside the model; syncing makes the next batch read them back,
      # with the new rate.
      sync()
    self._write(self.model.optimizer)
    self._log(logs)

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      self._log(logs)

  # ---- helpers ----

  def _batch_value(self, key: str, batch: int, logs) -> float:
    if key not in logs:
      raise KeyError(f"AdaptiveScheduler: logs have no {key!r} (keys: "
                     f"{sorted(logs)}); set monitor=/reward= to one of them.")
    value = float(np.asarray(logs[key]))
    if not self.running_mean:
      return value
    k = batch + 1  # batches so far this epoch
    j, prev = self._last_mean.get(key, (0, 0.0))
    self._last_mean[key] = (k, value)
    if k <= j:  # a new epoch the hooks did not announce: restart
      return value
    return (k * value - j * prev) / (k - j)

  def _write(self, opt) -> None:
    opt.learning_rate = self._controller.rates[0]
    if self._drive_momentum:
      opt.momentum = self._controller.momenta[0]

  def _log(self, logs) -> None:
    logs["learning_rate"] = self._controller.rates[0]
    if self._controller.cfg.has_momentum:
      logs["momentum"] = self._controller.momenta[0]


def _options(reward, mode, policy) -> dict[str, Any]:
  """The policy options of a callback, validated."""
  if "use_reward" in policy:
    raise TypeError("AdaptiveScheduler takes reward=<logs key> instead of "
                    "use_reward: the key turns the reward rule on.")
  options = dict(policy, mode=mode, use_reward=reward is not None)
  _host.build(options, "AdaptiveScheduler")
  return options


_WITH_BASE: dict[type, type] = {}


def _with_keras_base(cls: type) -> type:
  """``cls`` with ``keras.callbacks.Callback`` as a base (imports keras)."""
  import keras  # pylint: disable=g-import-not-at-top
  if issubclass(cls, keras.callbacks.Callback):
    return cls
  if cls not in _WITH_BASE:
    _WITH_BASE[cls] = type(cls.__name__, (cls, keras.callbacks.Callback),
                           {"__doc__": cls.__doc__,
                            "__module__": cls.__module__,
                            "__qualname__": cls.__qualname__})
  return _WITH_BASE[cls]
