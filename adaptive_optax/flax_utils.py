"""Flax helpers: a Linen ``TrainState`` that hands the loss to optax.

Flax NNX needs nothing: ``nnx.Optimizer.update(model, grads, value=loss)``
already forwards keyword arguments to ``tx.update``. Linen's
``flax.training.train_state.TrainState.apply_gradients`` does not, so
:class:`TrainState` here adds ``value=`` and ``reward=``.
"""

from __future__ import annotations

from typing import Any, Mapping

import optax
from flax.training import train_state
from flax.training.train_state import OVERWRITE_WITH_GRADIENT


class TrainState(train_state.TrainState):
  """Linen ``TrainState`` whose ``apply_gradients`` passes the loss to optax.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import flax.linen as nn
    >>> import adaptive_optax as ao
    >>> from adaptive_optax.flax_utils import TrainState
    >>> model = nn.Dense(1)
    >>> x, y = jnp.ones((4, 3)), jnp.zeros((4, 1))
    >>> state = TrainState.create(
    ...     apply_fn=model.apply,
    ...     params=model.init(jax.random.PRNGKey(0), x),
    ...     tx=optax.chain(optax.sgd(0.1), ao.adaptive_scale()))
    >>> loss_fn = lambda p: jnp.mean((state.apply_fn(p, x) - y) ** 2)
    >>> loss, grads = jax.value_and_grad(loss_fn)(state.params)
    >>> state = state.apply_gradients(grads=grads, value=loss)
    >>> int(state.step)
    1
  """

  def apply_gradients(self, *, grads, value=None, reward=None,
                      extra_args: dict[str, Any] | None = None, **kwargs):
    """Updates ``step``, ``params`` and ``opt_state`` from ``grads``.

    Args:
      grads: gradients with the structure of ``params``.
      value: the step's scalar loss, passed as ``tx.update(..., value=)``;
        needed by ``adaptive_scale``/``adaptive_hyperparams``.
      reward: the step's scalar reward (``use_reward=True``), passed as
        ``reward=``; ``None`` passes nothing.
      extra_args: any other keyword arguments for ``tx.update``.
      **kwargs: other fields to ``.replace()``, as in Flax.

    Returns:
      The updated state.
    """
    tx_args = dict(extra_args or {})
    if value is not None:
      tx_args["value"] = value
    if reward is not None:
      tx_args["reward"] = reward

    owg = isinstance(grads, Mapping) and OVERWRITE_WITH_GRADIENT in grads
    grads_opt = grads["params"] if owg else grads
    params_opt = self.params["params"] if owg else self.params
    updates, new_opt_state = self.tx.update(
        grads_opt, self.opt_state, params_opt, **tx_args)
    new_params = optax.apply_updates(params_opt, updates)
    if owg:
      new_params = {
          "params": new_params,
          OVERWRITE_WITH_GRADIENT: grads[OVERWRITE_WITH_GRADIENT],
      }
    return self.replace(step=self.step + 1, params=new_params,
                        opt_state=new_opt_state, **kwargs)
