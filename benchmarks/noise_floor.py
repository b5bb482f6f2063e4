"""A long run at a noise floor: what holding the rate costs where annealing pays.

A linear regression (10 features, batches of 32, SGD with momentum 0.9 at
0.01) whose targets carry Student-t noise of few degrees of freedom (1.5: no
variance; 2.5): after a few thousand steps the loss is trendless, its batch
losses heavy-tailed. Constant rates and cosine decays at 1, 1/10 and 1/100 of
the given rate, against ``adaptive_scale()`` with and without the run's length
(``total_steps``). Cell: the final squared distance to the true weights, per
seed; for ours, also the applied scale over the last 2,000 steps.

The stable policy holds the rate where the loss gives no evidence; on a noise
floor the final error falls with the rate, so only a decay (the horizon's, or
a schedule's) gets there. See docs/stable_policy.md, rule 4 (*Cost*).

  python benchmarks/noise_floor.py                # ~2 min on 2 cores
  python benchmarks/noise_floor.py --steps 5000 --seeds 2 --out -
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptive_optax as ao

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  pylint: disable=wrong-import-position

LR = 0.01
DIM, BATCH = 10, 32


def _columns(steps):
  """{name: a function of nothing giving the transformation}."""
  cols = {}
  for f in (1.0, 0.1, 0.01):
    cols[f"constant x{f:g}"] = lambda f=f: optax.sgd(LR * f, momentum=0.9)
    cols[f"cosine x{f:g}"] = lambda f=f: optax.sgd(
        optax.cosine_decay_schedule(LR * f, steps), momentum=0.9)
  cols["ours"] = lambda: optax.chain(optax.sgd(LR, momentum=0.9),
                                     ao.adaptive_scale())
  cols["ours, total_steps"] = lambda: optax.chain(
      optax.sgd(LR, momentum=0.9), ao.adaptive_scale(total_steps=steps))
  return cols


def run(make_tx, df, seeds, steps, controlled):
  """Per seed: (squared error of the final weights, mean applied scale over
  the last 2,000 steps, NaN unless ``controlled``)."""

  def one(seed):
    k_true, k_run = jax.random.split(jax.random.PRNGKey(seed))
    w_true = jax.random.normal(k_true, (DIM,))
    tx = make_tx()
    p = jnp.zeros(DIM)
    state = tx.init(p)

    def body(carry, key):
      p, state = carry
      k_x, k_e = jax.random.split(key)
      x = jax.random.normal(k_x, (BATCH, DIM))
      y = x @ w_true + jax.random.t(k_e, df, (BATCH,))
      loss, g = jax.value_and_grad(lambda p: jnp.mean((x @ p - y) ** 2))(p)
      u, state = tx.update(g, state, p, value=loss)
      scale = ao.metrics(state)["scale"] if controlled else jnp.nan
      return (optax.apply_updates(p, u), state), scale

    (p, _), scales = jax.lax.scan(body, (p, state),
                                  jax.random.split(k_run, steps))
    return jnp.sum((p - w_true) ** 2), jnp.mean(scales[-2000:])

  err, scale = jax.jit(jax.vmap(one))(jnp.asarray(seeds))
  return np.asarray(err), np.asarray(scale)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=50_000)
  ap.add_argument("--seeds", type=int, default=3)
  ap.add_argument("--dfs", default="1.5,2.5",
                  help="comma-separated degrees of freedom of the noise")
  _timing.add_out_argument(ap, "noise_floor.md")
  args = ap.parse_args(argv)
  load0 = _timing.load_average()
  seeds = list(range(args.seeds))
  rows = []
  for df in (float(d) for d in args.dfs.split(",")):
    for name, make in _columns(args.steps).items():
      err, scale = run(make, df, seeds, args.steps,
                       controlled=name.startswith("ours"))
      rows.append([f"{df:g}", name, " / ".join(f"{e:.2g}" for e in err),
                   " / ".join(f"{s:.2g}" for s in scale)
                   if np.all(np.isfinite(scale)) else "-"])
  body = _timing.table(["noise df", "rate", "squared error by seed",
                        "applied scale, last 2,000 steps"], rows)
  _timing.report(
      "A long run at a noise floor", body, args.out, load0,
      {"what": f"linear regression, {DIM} features, batch {BATCH}, SGD "
               f"momentum 0.9 at {LR}; Student-t noise; {args.steps:,} "
               f"steps, seeds {seeds}"})


if __name__ == "__main__":
  main()
