"""A check outside the quality suite: ``adaptive_scale()`` on top of a schedule.

An MLP 64-128-10 on scikit-learn's digits (1,400 training rows, 397 held
out), AdamW (weight decay 1e-4), batches of 32 drawn at random, 1,500 steps,
scored on the held-out cross-entropy (geometric mean over seeds), for a
range of peak rates:

* a warm-up + cosine schedule (100 warm-up steps, down to 1% of the peak),
  alone and chained with ``adaptive_scale()``; the same chain with
  ``rules=()`` (a scale that never moves: what floating point alone does);
* a constant rate, alone, with ``adaptive_scale()``, and with
  ``adaptive_scale(total_steps=1500)`` (the horizon's final decay).

Nothing was chosen from this task; it is reported in ``docs/concepts.md``.

  python benchmarks/with_schedule.py          # ~3 min on 2 cores
  python benchmarks/with_schedule.py --peaks 1e-3 --steps 50 --seeds 1 --out -
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import adaptive_optax as ao

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  pylint: disable=wrong-import-position

BATCH, TRAIN = 32, 1400


def warmup_steps(steps: int) -> int:
  return max(1, steps // 15)  # 100 of 1,500


def _data():
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype(np.float32)
  order = np.random.default_rng(0).permutation(len(x))
  x, y = jnp.asarray(x[order]), jnp.asarray(y[order])
  return x[:TRAIN], y[:TRAIN], x[TRAIN:], y[TRAIN:]


def _init(key):
  k1, k2 = jax.random.split(key)
  return {"w1": jax.random.normal(k1, (64, 128)) * (2 / 64) ** 0.5,
          "b1": jnp.zeros(128),
          "w2": jax.random.normal(k2, (128, 10)) * (1 / 128) ** 0.5,
          "b2": jnp.zeros(10)}


def _xent(p, x, t):
  logits = jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, t).mean()


def variants(steps: int):
  def cosine(peak):
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup_steps(steps),
                                              steps, peak * 0.01)
  adamw = lambda lr: optax.adamw(lr, weight_decay=1e-4)  # noqa: E731
  return {
      "cosine": lambda peak: adamw(cosine(peak)),
      "cosine + adaptive_scale()": lambda peak: optax.chain(
          adamw(cosine(peak)), ao.adaptive_scale()),
      "cosine + adaptive_scale(rules=())": lambda peak: optax.chain(
          adamw(cosine(peak)), ao.adaptive_scale(rules=())),
      "constant": adamw,
      "constant + adaptive_scale()": lambda peak: optax.chain(
          adamw(peak), ao.adaptive_scale()),
      "constant + adaptive_scale(total_steps)": lambda peak: optax.chain(
          adamw(peak), ao.adaptive_scale(total_steps=steps)),
  }


def score(make_tx, peak: float, seeds: int, steps: int, data) -> float:
  xtr, ytr, xte, yte = data

  def run(seed):
    tx = make_tx(peak)
    params = _init(jax.random.PRNGKey(seed))

    def body(carry, key):
      p, s = carry
      rows = jax.random.choice(key, TRAIN, (BATCH,), replace=False)
      loss, g = jax.value_and_grad(_xent)(p, xtr[rows], ytr[rows])
      u, s = tx.update(g, s, p, value=loss)
      return (optax.apply_updates(p, u), s), loss

    keys = jax.random.split(jax.random.PRNGKey(100 + seed), steps)
    (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), keys)
    return _xent(params, xte, yte)

  held_out = jax.jit(jax.vmap(run))(jnp.arange(seeds))
  return float(np.exp(np.mean(np.log(np.asarray(held_out)))))


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--peaks", default="1e-4,1e-3,1e-2,3e-2,1e-1,3e-1")
  ap.add_argument("--seeds", type=int, default=4)
  ap.add_argument("--steps", type=int, default=1500)
  ap.add_argument("--out", default=os.path.join(_timing.RESULTS_DIR,
                                                "with_schedule.md"),
                  help="results file; '-' prints only")
  args = ap.parse_args(argv)
  load0 = _timing.load_average()
  peaks = [float(p) for p in args.peaks.split(",")]
  data = _data()
  rows = []
  for name, make in variants(args.steps).items():
    rows.append([name] + [f"{score(make, p, args.seeds, args.steps, data):.4f}"
                          for p in peaks])
    print(" ".join(rows[-1]), flush=True)
  body = _timing.table(["variant"] + [f"peak {p:g}" for p in peaks], rows)
  _timing.report(
      "adaptive_scale() on top of a schedule: digits MLP, AdamW", body,
      None if args.out == "-" else args.out, load0,
      extra={"score": "held-out cross-entropy, geometric mean over "
                      f"{args.seeds} seeds",
             "steps": f"{args.steps}, batch {BATCH}, warm-up "
                      f"{warmup_steps(args.steps)}"})


if __name__ == "__main__":
  main()
