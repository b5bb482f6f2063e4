"""The quality suite's tasks: data, model, per-step loss and held-out score.

Every task is a :class:`Task`: ``init(key)`` builds parameters, ``stream(key,
steps)`` draws the per-step inputs (batch indices or PRNG keys) so that every
column sees the same data order, ``step_loss(params, x)`` returns the loss to
differentiate and its auxiliaries (the ``value`` fed to the controller, the
``reward`` for reward-driven columns, the per-step ``regret``), and
``score(params, aux)`` the final held-out loss (or total regret). All are pure
JAX, so a whole training run is one ``lax.scan``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from adaptive_optax.toy import init_mlp as _dense_init  # torch.nn.Linear's init
from adaptive_optax.toy import mlp as _mlp


@dataclasses.dataclass(frozen=True)
class Task:
  name: str  # short id, used in file names
  title: str  # one line for the table
  optimizer: str  # "sgd" (momentum 0.9), "sgd_plain", "adam" or "adamw"
  lr: float  # the good starting learning rate
  steps: int  # training steps of the full run
  init: Callable[[jax.Array], Any]
  stream: Callable[[jax.Array, int], jax.Array]
  step_loss: Callable[[Any, jax.Array], tuple[jax.Array, dict]]
  score: Callable[[Any, dict], jax.Array]
  reward: bool = False  # the controller columns also get reward=


def _batches(n, batch):
  """Fresh permutation every epoch, as a shuffling DataLoader."""
  per_epoch = n // batch

  def stream(key, steps):
    epochs = -(-steps // per_epoch)
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(
        jax.random.split(key, epochs))
    return perms[:, : per_epoch * batch].reshape(-1, batch)[:steps]
  return stream


def _fixed_batches(n, batch, n_batches):
  """The same ``n_batches`` mini-batches, visited in order, every cycle.

  A data loader without shuffling over a small set: the loss is periodic in
  the step, a trendless component the controller must not read as a trend.
  """
  def stream(key, steps):
    del key
    ix = jnp.arange(n_batches * batch).reshape(n_batches, batch) % n
    return ix[jnp.arange(steps) % n_batches]
  return stream


def _supervised(name, title, optimizer, lr, steps, batch, sizes, xtr, ytr,
                xte, yte, kind, model=_mlp, stream=None):
  xtr, ytr, xte, yte = map(jnp.asarray, (xtr, ytr, xte, yte))

  def loss_of(params, x, y):
    out = model(params, x)
    if kind == "mse":
      return jnp.mean((out[:, 0] - y) ** 2)
    logp = jax.nn.log_softmax(out)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

  def step_loss(params, ix):
    loss = loss_of(params, xtr[ix], ytr[ix])
    return loss, {"value": loss}

  def score(params, aux):
    del aux
    return loss_of(params, xte, yte)

  return Task(name, title, optimizer, lr, steps,
              init=lambda k: _dense_init(k, sizes),
              stream=stream or _batches(xtr.shape[0], batch),
              step_loss=step_loss, score=score)


def seed_demo() -> Task:
  """The seed's demo: y = Xw + 0.1 noise, MLP 10-32-1, SGD 0.05 momentum 0.9."""
  from adaptive_optax import toy  # pylint: disable=import-outside-toplevel
  train = toy.make_toy_dataset(0)
  held = toy.make_toy_dataset(0, n=2048)  # same w (same key split), new draws
  # make_toy_dataset draws x and noise from the same keys for any n, so the
  # first 512 held-out rows would repeat the training set: drop them.
  xte, yte = held.x[512:], held.y[512:, 0]
  return _supervised("seed_demo", "seed demo (MLP 10-32-1, SGD+m)", "sgd",
                     0.05, 2000, 64, (10, 32, 1), train.x, train.y[:, 0],
                     xte, yte, "mse")


def _digits():
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype(np.float32)
  perm = np.random.default_rng(0).permutation(len(x))
  x, y = x[perm], y[perm].astype(np.int32)
  return x[:1437], y[:1437], x[1437:], y[1437:]


def digits_sgd() -> Task:
  return _supervised("digits_sgd", "digits (MLP 64-64-10, SGD+m)", "sgd", 0.15,
                     1500, 64, (64, 64, 10), *_digits(), "ce")


def digits_adam() -> Task:
  return _supervised("digits_adam", "digits (MLP 64-64-10, Adam)", "adam",
                     1e-2, 1500, 64, (64, 64, 10), *_digits(), "ce")


def friedman1() -> Task:
  from sklearn.datasets import make_friedman1  # pylint: disable=import-outside-toplevel
  x, y = make_friedman1(n_samples=3000, noise=1.0, random_state=0)
  x = ((x - 0.5) / np.sqrt(1 / 12)).astype(np.float32)  # U(0,1) -> unit var
  y = y.astype(np.float32)
  return _supervised("friedman1", "friedman1 noise=1 (MLP 10-64-64-1, SGD+m)",
                     "sgd", 1e-3, 2000, 64, (10, 64, 64, 1), x[:2000], y[:2000],
                     x[2000:], y[2000:], "mse")


_PATCH, _STRIDE, _CHANNELS = 5, 2, 32


def _cnn(params, x):
  """A 1-D conv as patch extraction + dense (faster than a conv on CPU)."""
  n_pos = (x.shape[1] - _PATCH) // _STRIDE + 1
  idx = np.arange(n_pos)[:, None] * _STRIDE + np.arange(_PATCH)[None, :]
  patches = x[:, idx]  # (B, n_pos, patch)
  h = jax.nn.relu(patches @ params[0]["w"] + params[0]["b"])
  return _mlp(params[1:], h.reshape(x.shape[0], -1))


def mnist1d() -> Task:
  from mnist1d.data import get_dataset_args, make_dataset  # pylint: disable=import-outside-toplevel
  saved = np.random.get_state()  # make_dataset reseeds numpy's generator
  try:
    d = make_dataset(get_dataset_args())
  finally:
    np.random.set_state(saved)
  n_pos = (40 - _PATCH) // _STRIDE + 1
  sizes = (_PATCH, _CHANNELS, n_pos * _CHANNELS, 10)
  task = _supervised("mnist1d", "mnist1d (1-D CNN, Adam)", "adam", 1e-2, 2000,
                     128, (1, 1), d["x"].astype(np.float32),
                     d["y"].astype(np.int32), d["x_test"].astype(np.float32),
                     d["y_test"].astype(np.int32), "ce", model=_cnn)
  init = lambda k: (_dense_init(k, sizes[:2])
                    + _dense_init(jax.random.fold_in(k, 1), sizes[2:]))
  return dataclasses.replace(task, init=init)


def bandit(arms: int = 10, pulls: int = 16, steps: int = 2000) -> Task:
  """REINFORCE on a Bernoulli bandit whose arm ranking reverses half way.

  The policy is a softmax over ``arms`` logits; each step draws ``pulls``
  arms, the loss fed to the controller is ``1 - mean reward``, and the score
  is the total expected regret ``sum_t (p*_t - pi_t . p_t)``.
  """
  probs = jnp.linspace(0.1, 0.9, arms)
  probs = jax.random.permutation(jax.random.PRNGKey(7), probs)
  switched = probs[::-1]

  def step_loss(params, x):
    key, t = x
    p = jnp.where(t < steps // 2, probs, switched)
    logp = jax.nn.log_softmax(params["logits"])
    ka, kr = jax.random.split(key)
    a = jax.random.categorical(ka, logp, shape=(pulls,))
    r = (jax.random.uniform(kr, (pulls,)) < p[a]).astype(jnp.float32)
    adv = jax.lax.stop_gradient(r - jnp.mean(r))
    surrogate = -jnp.mean(adv * logp[a])
    pi = jax.lax.stop_gradient(jnp.exp(logp))
    aux = {"value": 1.0 - jnp.mean(r), "reward": jnp.mean(r),
           "regret": jnp.max(p) - pi @ p}
    return surrogate, aux

  def stream(key, n):
    return jax.random.split(key, n), jnp.arange(n)

  return Task("bandit", "bandit, best arm changes half way (REINFORCE, SGD+m)",
              "sgd", 3.0, steps,
              init=lambda k: {"logits": jnp.zeros(arms)},
              stream=stream, step_loss=step_loss,
              score=lambda params, aux: jnp.sum(aux["regret"]), reward=True)


def _standardize(xtr, xte):
  mu, sd = xtr.mean(0), xtr.std(0) + 1e-8
  return ((xtr - mu) / sd).astype(np.float32), ((xte - mu) / sd).astype(np.float32)


def _split(x, y, n_train, seed=0):
  perm = np.random.default_rng(seed).permutation(len(x))
  x, y = x[perm], y[perm]
  xtr, xte = _standardize(x[:n_train], x[n_train:])
  return xtr, y[:n_train], xte, y[n_train:]


def cyclic_linreg() -> Task:
  """The issue's silent divergence: linear regression, 8 fixed batches in order.

  10 features and a bias, y = Xw + 3 + 0.1 noise; SGD with momentum 0.9 at
  0.01 converges on its own.
  """
  rng = np.random.default_rng(3)
  x = rng.normal(size=(2256, 10)).astype(np.float32)
  y = (x @ rng.normal(size=10) + 3.0 + 0.1 * rng.normal(size=2256)).astype(
      np.float32)
  return _supervised("cyclic_linreg", "linear regression, 8 fixed batches "
                     "(SGD+m)", "sgd", 0.03, 2000, 32, (10, 1), x[:256],
                     y[:256], x[256:], y[256:], "mse",
                     stream=_fixed_batches(256, 32, 8))


def wine_sgd() -> Task:
  from sklearn.datasets import load_wine  # pylint: disable=import-outside-toplevel
  x, y = load_wine(return_X_y=True)
  return _supervised("wine_sgd", "wine, 300 steps (MLP 13-32-3, plain SGD, b16)",
                     "sgd_plain", 1.8, 300, 16, (13, 32, 3),
                     *_split(x, y.astype(np.int32), 120), "ce")


# Holdout tasks: run only to report, never to choose a rule or a constant.


def breast_cancer_adamw() -> Task:
  from sklearn.datasets import load_breast_cancer  # pylint: disable=import-outside-toplevel
  x, y = load_breast_cancer(return_X_y=True)
  return _supervised("breast_cancer", "breast cancer, 400 steps (MLP 30-32-2, "
                     "AdamW, b32)", "adamw", 1e-3, 400, 32, (30, 32, 2),
                     *_split(x, y.astype(np.int32), 400), "ce")


def diabetes_sgd() -> Task:
  from sklearn.datasets import load_diabetes  # pylint: disable=import-outside-toplevel
  x, y = load_diabetes(return_X_y=True)
  y = ((y - y.mean()) / y.std()).astype(np.float32)
  return _supervised("diabetes", "diabetes, 500 steps (MLP 10-32-1, plain SGD, "
                     "b16)", "sgd_plain", 3e-3, 500, 16, (10, 32, 1),
                     *_split(x, y, 330), "mse")


def iris_tiny() -> Task:
  from sklearn.datasets import load_iris  # pylint: disable=import-outside-toplevel
  x, y = load_iris(return_X_y=True)
  return _supervised("iris_tiny", "iris, 30 samples, overfits (MLP 4-64-3, "
                     "Adam, b16)", "adam", 2e-3, 400, 16, (4, 64, 3),
                     *_split(x, y.astype(np.int32), 30), "ce")


def mnist1d_sgd() -> Task:
  task = mnist1d()
  return dataclasses.replace(
      task, name="mnist1d_sgd", title="mnist1d, 3000 steps (1-D CNN, SGD+m, "
      "b256)", optimizer="sgd", lr=0.03, steps=3000,
      stream=_batches(4000, 256))


def classif_adamw() -> Task:
  from sklearn.datasets import make_classification  # pylint: disable=import-outside-toplevel
  x, y = make_classification(n_samples=12000, n_features=40, n_informative=20,
                             n_classes=5, n_clusters_per_class=2, flip_y=0.05,
                             random_state=1)
  return _supervised("classif", "generated 5-class, 5000 steps (MLP 40-128-128-5, "
                     "AdamW, b256)", "adamw", 1e-3, 5000, 256, (40, 128, 128, 5),
                     *_split(x, y.astype(np.int32), 10000), "ce")


def digits_cyclic() -> Task:
  return _supervised("digits_cyclic", "digits, 8 fixed batches in order (MLP "
                     "64-64-10, Adam)", "adam", 1.7e-3, 1000, 64, (64, 64, 10),
                     *_digits(), "ce", stream=_fixed_batches(1437, 64, 8))


def heavy_tail_reg() -> Task:
  rng = np.random.default_rng(5)
  x = rng.normal(size=(4000, 20)).astype(np.float32)
  w = rng.normal(size=20) / np.sqrt(20)
  y = np.tanh(x @ w) * 2 + 0.3 * rng.standard_t(2, size=4000)
  return _supervised("heavy_tail", "regression, Student-t(2) noise (MLP "
                     "20-64-1, SGD+m, b64)", "sgd", 1.8e-3, 1500, 64, (20, 64, 1),
                     x[:3000], y[:3000].astype(np.float32), x[3000:],
                     y[3000:].astype(np.float32), "mse")


def digits_tiny() -> Task:
  x, y, xte, yte = _digits()
  return _supervised("digits_tiny", "digits, 100 samples, overfits (MLP "
                     "64-128-10, AdamW, b16)", "adamw", 5e-4, 1500, 16,
                     (64, 128, 10), x[:100], y[:100], xte, yte, "ce")


TUNE = (seed_demo, digits_sgd, digits_adam, friedman1, mnist1d, bandit,
        cyclic_linreg, wine_sgd)
HOLDOUT = (breast_cancer_adamw, diabetes_sgd, iris_tiny, mnist1d_sgd,
           classif_adamw, digits_cyclic, heavy_tail_reg, digits_tiny)
ALL = TUNE + HOLDOUT
