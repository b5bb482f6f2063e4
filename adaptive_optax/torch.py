"""A drop-in for the seed's PyTorch ``AdaptiveScheduler``, on the same policy.

Change one import and keep the loop::

  # from adaptive_scheduler import AdaptiveScheduler
  from adaptive_optax.torch import AdaptiveScheduler

The constructor takes the seed's arguments with the seed's names and
defaults, plus ``mode``: ``"stable"`` (the default, this library's fixed
semantics) or ``"reference"`` (the seed's class, step for step, quirks
included). Every step runs the library's one controller
(:mod:`adaptive_optax._policy`) in float64 on the host CPU; there is no
second copy of the rules here.

Needs the ``torch`` extra (``pip install 'adaptive_optax[torch]'``);
``import adaptive_optax`` does not import this module or torch.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler

from adaptive_optax import _host
from adaptive_optax import _policy

__all__ = ("AdaptiveScheduler",)

# Keys of state_dict() besides the controllers, restored by load_state_dict().
_PLAIN_KEYS = ("last_epoch", "_step_count", "base_lrs", "_last_lr")


def _to_float(name: str, value) -> float:
  """A float from a Python number or a one-element tensor (a host sync)."""
  if isinstance(value, torch.Tensor):
    if value.numel() != 1:
      raise ValueError(f"{name} must be a scalar (a float or a one-element "
                       f"tensor), got a tensor of shape {tuple(value.shape)}.")
    # .item() waits for the device to finish the step that computed it.
    return float(value.detach().item())
  try:
    return float(value)
  except (TypeError, ValueError) as e:
    raise TypeError(f"{name} must be a float or a one-element tensor, got "
                    f"{type(value).__name__}.") from e


class AdaptiveScheduler(LRScheduler):
  """Sets each param group's LR (and momentum) from the loss, as the seed does.

  One controller per param group, as the seed keeps; the momentum of groups
  with a ``momentum`` key (SGD, RMSprop) is driven too (it moves only with
  ``use_reward=True``, and is clamped to ``[momentum_min, momentum_max]``).
  Groups without one (Adam's ``betas``) keep their momentum terms.

  Call pattern (the seed's)::

    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    scheduler.step_loss(loss)       # or set_metrics(loss) then step()
    optimizer.zero_grad()

  ``step_loss`` reads a tensor ``loss`` with ``.item()``, which waits for the
  device to finish computing it (a host sync per step, as in the seed). To
  overlap steps, pass a loss already on the host, or call ``step_loss`` every
  few steps with their mean.

  Two deliberate differences from the seed's class, in both modes: a
  non-finite loss is a step without metrics (the seed's LR turns NaN for
  good), and ``get_last_lr()`` works (the seed's raises).

  Args:
    optimizer: the wrapped ``torch.optim.Optimizer``; each param group's
      ``lr`` (and ``momentum``) is the controller's starting value.
    loss_beta: EMA factor of the loss.
    reward_beta: EMA factor of the reward.
    var_window: window of recent losses (variance; stable mode's trend
      windows).
    up_factor: LR factor when the loss improves.
    down_factor: LR factor when it worsens.
    min_rel_improve: relative improvement that counts as improving.
    var_damp_base: LR divided by ``var_damp_base + var_damp_scale * var``.
    var_damp_scale: see ``var_damp_base``.
    use_reward: turn the reward rule on (pass ``reward=`` to ``step_loss``).
    reward_up: LR factor when the reward improves.
    reward_down: LR factor when it worsens.
    momentum_up: momentum added when the reward improves.
    momentum_down: momentum factor when it worsens.
    patience: steps without improvement before a big drop.
    big_drop: LR factor of a big drop.
    cooldown: steps after a big drop before the next.
    use_cosine: turn the cosine warm-restart overlay on.
    T0: first cosine period, in steps.
    T_mult: factor of each next period.
    eta_min_scale: cosine floor as a fraction of the LR.
    lr_min: lower bound of the LR.
    lr_max: upper bound of the LR.
    momentum_min: lower bound of the momentum.
    momentum_max: upper bound of the momentum.
    last_epoch: as in every torch scheduler; leave it at -1 and resume with
      :meth:`load_state_dict`.
    mode: ``"stable"`` (default: trends decided over windows of
      ``var_window`` losses, damping and the cosine overlay applied to the
      applied LR only; see the porting guide) or ``"reference"`` (the
      seed's class, step for step).
    probe_growth: stable mode: the start-up probe's LR growth per window.
    guard_ratio: stable mode: a loss this many times its EMA is a spike.
    guard_sigma: stable mode: ...and this many noise deviations above it.
    cooldown_ratio: stable mode: patience periods last at least this
      fraction of the steps so far.
    start_scale: stable mode: the cautious start's first LR factor.
    **policy: any further option of
      :func:`adaptive_optax.adaptive_hyperparams`'s policy, by name (an
      unknown name is refused).

  Raises:
    ValueError: naming the first invalid hyperparameter or param group.

  Example:
    >>> import torch
    >>> from adaptive_optax.torch import AdaptiveScheduler
    >>> w = torch.nn.Parameter(torch.zeros(3))
    >>> opt = torch.optim.SGD([w], lr=0.05, momentum=0.9)
    >>> sched = AdaptiveScheduler(opt, mode="reference")
    >>> for loss in [1.0, 0.9, 0.8]:
    ...   lrs = sched.step_loss(loss)
    >>> round(opt.param_groups[0]["lr"], 6) == round(lrs[0], 6)
    True

  References:
    The seed: ``shared/seed/000_60f4000df75e1ce0.txt``, vendored verbatim in
    ``tests/oracle/adaptive_scheduler_seed.py``.
  """

  def __init__(
      self,
      optimizer: torch.optim.Optimizer,
      *,
      loss_beta: float = 0.9,
      reward_beta: float = 0.9,
      var_window: int = 20,
      up_factor: float = 1.05,
      down_factor: float = 0.7,
      min_rel_improve: float = 1e-4,
      var_damp_base: float = 1.0,
      var_damp_scale: float = 1.0,
      use_reward: bool = False,
      reward_up: float = 1.03,
      reward_down: float = 0.90,
      momentum_up: float = 0.01,
      momentum_down: float = 0.90,
      patience: int = 20,
      big_drop: float = 0.5,
      cooldown: int = 50,
      use_cosine: bool = False,
      T0: int = 200,
      T_mult: int = 2,
      eta_min_scale: float = 0.1,
      lr_min: float = 1e-7,
      lr_max: float = 10.0,
      momentum_min: float = 0.0,
      momentum_max: float = 0.999,
      last_epoch: int = -1,
      mode: str = "stable",
      probe_growth: float = 2.0,
      guard_ratio: float = 2.0,
      guard_sigma: float = 4.0,
      cooldown_ratio: float = 1.0,
      start_scale: float = 0.1,
      **policy,
  ):
    if not isinstance(optimizer, torch.optim.Optimizer):
      raise TypeError(f"optimizer must be a torch.optim.Optimizer, got "
                      f"{type(optimizer).__name__}.")
    options = dict(locals())
    for name in ("self", "optimizer", "last_epoch", "__class__", "policy"):
      options.pop(name, None)
    options.update(policy)
    self._configure(options, optimizer)
    self._pending: tuple[float, float] | None = None
    # The base class steps once without metrics; _policy.init has already
    # done the seed's constructor step, so that step only writes it back.
    self._constructing = True
    super().__init__(optimizer, last_epoch)
    self._constructing = False

  def _configure(self, options: dict[str, Any], optimizer) -> None:
    """Validates ``options``; fresh controllers, one row per param group.

    Groups with a ``momentum`` key and groups without one get a controller
    each (the switch changes the program); within one, all groups step in
    a single jitted call.
    """
    hp, cfg = _host.build(options, type(self).__name__)
    starts = {True: [], False: []}  # has momentum -> [(group, lr, momentum)]
    for i, g in enumerate(optimizer.param_groups):
      rate = _to_float(f"param_groups[{i}]['lr']", g["lr"])
      m = (_to_float(f"param_groups[{i}]['momentum']", g["momentum"])
           if "momentum" in g else None)
      _host.check_start(f"param_groups[{i}]", rate, m)
      starts[m is not None].append((i, rate, m))
    self._rows = [None] * len(optimizer.param_groups)
    self._controllers = []
    for has_m, rows in starts.items():
      if not rows:
        continue
      c = _host.HostController(hp, cfg, [r for _, r, _ in rows],
                               [m for _, _, m in rows] if has_m else None)
      self._controllers.append(c)
      for row, (i, _, _) in enumerate(rows):
        self._rows[i] = (c, row)
    self._options = options

  # ---- the seed's public API ----

  def step_loss(self, loss, reward=None) -> list[float]:
    """Consumes this step's loss (and reward); sets each group's LR.

    Args:
      loss: a float or a one-element tensor (read with ``.item()``: a host
        sync). NaN or inf: a step without metrics.
      reward: a float or one-element tensor, or ``None``; used with
        ``use_reward=True``.

    Returns:
      The LR of each param group, as the seed's ``step_loss``.
    """
    self.set_metrics(loss, reward)
    return self.step()

  def set_metrics(self, loss, reward=None) -> None:
    """Stores the metrics for the next :meth:`step` (the seed's alternative)."""
    reward = math.nan if reward is None else _to_float("reward", reward)
    self._pending = (_to_float("loss", loss), reward)

  def step(self, epoch: None = None) -> list[float]:
    """Steps every controller on the pending metrics (none: timers only)."""
    if epoch is not None:
      raise TypeError("AdaptiveScheduler.step() takes no epoch: it is driven "
                      "by losses (step_loss), not by a closed-form schedule.")
    self._step_count = getattr(self, "_step_count", 0) + 1
    self.last_epoch += 1
    pending, self._pending = self._pending, None
    if not self._constructing:
      loss, reward = pending if pending is not None else (math.nan, math.nan)
      for c in self._controllers:
        c.step(loss, reward)
    self._write_back()
    return self.get_lr()

  def get_lr(self) -> list[float]:
    """The LR each group's controller applies next."""
    return [c.rates[row] for c, row in self._rows]

  def _write_back(self) -> None:
    for g, (c, row) in zip(self.optimizer.param_groups, self._rows):
      _set(g, "lr", c.rates[row])
      if c.cfg.has_momentum:
        _set(g, "momentum", c.momenta[row])
    self._last_lr = [g["lr"].clone() if isinstance(g["lr"], torch.Tensor)
                     else g["lr"] for g in self.optimizer.param_groups]

  # ---- serialization ----

  def state_dict(self) -> dict[str, Any]:
    """Hyperparameters, counters and each group's controller, as tensors.

    Holds only tensors, numbers, strings and lists, so ``torch.save`` /
    ``torch.load(weights_only=True)`` round-trip it.
    """
    out = {k: getattr(self, k) for k in _PLAIN_KEYS}
    out["options"] = dict(self._options)
    arrays = {id(c): c.arrays() for c in self._controllers}
    out["controllers"] = [  # one per param group, as the seed's _gstate
        {k: torch.from_numpy(np.array(v[row]))
         for k, v in arrays[id(c)].items()}
        for c, row in self._rows]
    return out

  def load_state_dict(self, state_dict: dict[str, Any]) -> None:
    """Restores :meth:`state_dict`, hyperparameters included (torch's rule).

    Writes the restored LR and momentum into the optimizer's param groups.

    Raises:
      ValueError: when the state was saved for another number of param
        groups or has another layout.
    """
    saved = state_dict["controllers"]
    groups = self.optimizer.param_groups
    if len(saved) != len(groups):
      raise ValueError(f"state_dict holds {len(saved)} controllers but the "
                       f"optimizer has {len(groups)} param groups.")
    self._configure(dict(state_dict["options"]), self.optimizer)
    for c in self._controllers:
      mine = [saved[i] for i, (owner, _) in enumerate(self._rows)
              if owner is c]
      try:
        c.load_arrays({k: np.stack([np.asarray(g[k]) for g in mine])
                       for k in mine[0]})
      except KeyError as e:
        raise ValueError(f"state_dict controllers differ in their fields "
                         f"({e}).") from e
    for k in _PLAIN_KEYS:
      setattr(self, k, state_dict[k])
    self._pending = None
    self._write_back()

  @property
  def mode(self) -> str:
    return self._options["mode"]

  def controller_state(self, group: int = 0) -> _policy.ControllerState:
    """The controller of param group ``group`` (float64 jax arrays)."""
    c, row = self._rows[group]
    return jax.tree.map(lambda x: x[row], c.state)


def _set(group: dict, key: str, value: float) -> None:
  """Writes a hyperparameter, in place when the group holds it as a tensor."""
  if isinstance(group[key], torch.Tensor):
    group[key].fill_(value)
  else:
    group[key] = value
