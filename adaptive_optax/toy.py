"""The seed's demo problem in JAX: synthetic 10-d regression, MLP 10-32-1.

Shared by the tests, the benchmarks, the notebooks and ``adaptive-optax demo``
so that "the seed's demo" means one thing everywhere. The data follow the
seed's ``make_toy_dataset`` (512 samples, ``y = X w + 0.1 noise``), drawn with
JAX's generator (torch's cannot be reproduced without torch); batches of 64,
reshuffled every epoch, as the seed's ``DataLoader(shuffle=True)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from adaptive_optax import _metrics

N_SAMPLES, N_FEATURES, HIDDEN, BATCH = 512, 10, 32, 64
STEPS_PER_EPOCH = N_SAMPLES // BATCH
SEED_LR, SEED_MOMENTUM = 0.05, 0.9
SEED_EPOCHS = 5


class Dataset(NamedTuple):
  x: jax.Array  # (512, 10)
  y: jax.Array  # (512, 1)


def make_toy_dataset(seed: int = 0, n: int = N_SAMPLES) -> Dataset:
  kx, kw, kn = jax.random.split(jax.random.PRNGKey(seed), 3)
  x = jax.random.normal(kx, (n, N_FEATURES))
  true_w = jax.random.normal(kw, (N_FEATURES, 1))
  y = x @ true_w + 0.1 * jax.random.normal(kn, (n, 1))
  return Dataset(x, y)


def init_mlp(key: jax.Array, sizes=(N_FEATURES, HIDDEN, 1)) -> list[dict]:
  """torch.nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  params = []
  for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
    key, kw, kb = jax.random.split(key, 3)
    bound = 1.0 / jnp.sqrt(fan_in)
    params.append(dict(
        w=jax.random.uniform(kw, (fan_in, fan_out), minval=-bound, maxval=bound),
        b=jax.random.uniform(kb, (fan_out,), minval=-bound, maxval=bound)))
  return params


def mlp(params, x):
  for layer in params[:-1]:
    x = jax.nn.relu(x @ layer["w"] + layer["b"])
  return x @ params[-1]["w"] + params[-1]["b"]


def mse(params, x, y):
  return jnp.mean((mlp(params, x) - y) ** 2)


def batch_indices(key: jax.Array, steps: int, n: int = N_SAMPLES,
                  batch: int = BATCH) -> jax.Array:
  """(steps, batch) indices: a fresh permutation every epoch, as DataLoader."""
  per_epoch = n // batch
  epochs = -(-steps // per_epoch)
  perms = jax.vmap(lambda k: jax.random.permutation(k, n))(
      jax.random.split(key, epochs))
  return perms[:, : per_epoch * batch].reshape(-1, batch)[:steps]


def initial_state(seed: int, steps: int) -> tuple[list[dict], jax.Array]:
  """Run ``seed``'s initial MLP and batch order: the same for every optimizer."""
  k_init, k_data = jax.random.split(jax.random.PRNGKey(seed))
  return init_mlp(k_init), batch_indices(k_data, steps)


def train_step(tx: optax.GradientTransformation, data: Dataset):
  """One step on a batch of indices: ``((params, opt_state), ix) -> (carry, loss)``.

  ``tx.update`` gets ``value=`` the batch loss. Shaped for ``lax.scan``.
  """
  def step(carry, ix):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(mse)(params, data.x[ix], data.y[ix])
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    return (optax.apply_updates(params, updates), opt_state), loss
  return step


def train(tx: optax.GradientTransformation, *, steps: int = SEED_EPOCHS *
          STEPS_PER_EPOCH, seed: int = 0, data: Dataset | None = None,
          with_metrics: bool | None = None) -> dict[str, jax.Array]:
  """Trains the demo MLP with ``tx`` inside one ``lax.scan``.

  Jittable and vmappable over anything ``tx`` closes over. ``tx.update`` is
  called with ``value=`` the batch loss.

  Returns:
    ``loss`` (steps,) batch losses; ``final_mse`` full-data MSE after
    training; and, when the state holds a controller, its per-step metrics
    under ``metrics``.
  """
  data = make_toy_dataset() if data is None else data
  params, idx = initial_state(seed, steps)
  opt_state = tx.init(params)
  if with_metrics is None:
    try:
      _metrics.metrics(opt_state)
      with_metrics = True
    except ValueError:
      with_metrics = False
  step = train_step(tx, data)

  def body(carry, ix):
    carry, loss = step(carry, ix)
    out = {"loss": loss}
    if with_metrics:
      out["metrics"] = _metrics.metrics(carry[1])
    return carry, out

  (params, _), out = jax.lax.scan(body, (params, opt_state), idx)
  out["final_mse"] = mse(params, data.x, data.y)
  return out
