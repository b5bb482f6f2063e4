#!/usr/bin/env python3
"""The controller on optimizers the quality suite does not use (report only).

The quality suite (``quality.py``) trains with SGD, SGD with momentum, Adam
and AdamW. Users chain the controller after others: this script takes two of
its tasks' data and models (``digits``: MLP 64-64-10, batch 64, 1,500 steps;
``friedman1``: MLP 10-64-64-1, batch 64, 2,000 steps) and swaps the optimizer.
For each pair the good LR is the best constant rate of a half-decade grid
(1e-7 ... 1, geometric mean over the seeds), and ``adaptive_scale()``
(defaults) starts from it, from 100x below it and from 10x above it. A cell is
the final held-out loss over the best grid point's of the same seed, as a
geometric mean over the seeds (1.00: as good as the best constant rate); a
diverged run counts as 1e6, as in ``quality.py``.

Its rows chose one constant of the defaults, the drift rule's radial test
(``RADIAL`` in ``adaptive_optax/_displacement.py``), with the tune split of
``quality.py``: 1/2, against 0.3 (better on Lion's digits cells, worse from
100x too low with Adafactor on digits, 3.04 against 2.43) and 0.707 (Lion on
digits still 5.6-6.8x from the good and high starts). The Lion rows are also
where the workarounds for a long-memory optimizer (``ours -drift``, ``ours
W=50``, ``ours dW=50``) were first measured; docs/stable_policy.md checks them
on three more data sets.
``adam + warmup-cosine`` is Adam under a
5%-warmup cosine schedule to 0 at the grid's peak (the user's own schedule,
which the controller then scales); its cells are against the best point of
the same scheduled grid.

Usage::

  python benchmarks/optimizers.py                    # ~5 min on 2 cores
  python benchmarks/optimizers.py --tasks digits --optimizers lion --seeds 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _quality_tasks as tasks_lib  # pylint: disable=wrong-import-position
import quality  # pylint: disable=wrong-import-position
import adaptive_optax as ao  # pylint: disable=wrong-import-position

GRID = tuple(10.0 ** (k / 2) for k in range(-14, 1))  # 1e-7 ... 1
STARTS = {"good": 1.0, "100x low": 0.01, "10x high": 10.0}
# adaptive_scale's keywords per variant: the defaults, and the workarounds
# for an optimizer whose memory is longer than a window (Lion's: the drift
# rule reads it as travel; docs/stable_policy.md, "An optimizer that
# remembers longer than a window"): no drift rule, longer windows, a longer
# drift window alone.
VARIANTS = {"ours": {},
            "ours -drift": {"rules": tuple(r for r in quality.ao_rules()
                                           if r != "drift")},
            "ours W=50": {"var_window": 50},
            "ours dW=50": {"drift_window": 50}}


def _warmup_cosine(lr, steps):
  """Linear warmup over 5% of the steps, then a cosine to 0 (``lr`` may be
  traced: optax's own schedule tests its peak in Python)."""
  warm = max(1, round(0.05 * steps))

  def schedule(t):
    t = jnp.asarray(t, jnp.float32)
    frac = jnp.clip((t - warm) / (steps - warm), 0, 1)
    return lr * jnp.where(t < warm, t / warm,
                          0.5 * (1 + jnp.cos(jnp.pi * frac)))
  return schedule


# name -> (lr, steps) -> optimizer
OPTIMIZERS = {
    "lion": lambda lr, steps: optax.lion(lr),
    "rmsprop": lambda lr, steps: optax.rmsprop(lr),
    "sgd nesterov": lambda lr, steps: optax.sgd(lr, momentum=0.9,
                                                nesterov=True),
    "adafactor": lambda lr, steps: optax.adafactor(lr),
    "adabelief": lambda lr, steps: optax.adabelief(lr),
    "adam + warmup-cosine": lambda lr, steps: optax.adam(
        _warmup_cosine(lr, steps)),
}
TASKS = {"digits": tasks_lib.digits_adam, "friedman1": tasks_lib.friedman1}


def run_pair(task, make_opt, seeds):
  """The good LR, each grid point's score (geometric-mean ratio to each
  seed's best grid point), that best per seed, and, per variant of ours,
  raw scores (len(STARTS), seeds)."""
  steps = task.steps

  def grid_build(lr):
    return (lambda: make_opt(lr, steps)), (lambda s, t: lr)
  grid = quality._vrun(task, grid_build, [(g,) for g in GRID], seeds, steps)[0]
  best = np.min(quality._clean(grid), axis=0)
  grid_gm = [quality._geomean(quality._ratios(g, best)) for g in grid]
  good = GRID[int(np.argmin(grid_gm))]
  ours = {}
  for name, kw in VARIANTS.items():
    def build(factor, kw=kw):
      lr = good * factor
      return ((lambda: optax.chain(make_opt(lr, steps),
                                   ao.adaptive_scale(**kw))),
              (lambda s, t: lr * ao.metrics(s)["scale"]))
    ours[name] = quality._vrun(task, build, [(f,) for f in STARTS.values()],
                               seeds, steps)[0]
  return good, grid_gm, best, ours


def cells(good, grid_gm, best, ours):
  """{start: [fixed, each variant]}: geometric-mean ratios to each seed's
  best grid point (fixed: NaN where the start is off the grid)."""
  out = {}
  for i, (name, factor) in enumerate(STARTS.items()):
    j = int(np.argmin(np.abs(np.log(np.asarray(GRID) / (good * factor)))))
    fixed = (grid_gm[j] if np.isclose(GRID[j], good * factor, rtol=1e-3)
             else float("nan"))
    out[name] = [fixed] + [quality._geomean(quality._ratios(v[i], best))
                           for v in ours.values()]
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--tasks", default=",".join(TASKS))
  ap.add_argument("--optimizers", default=",".join(OPTIMIZERS))
  ap.add_argument("--seeds", type=int, default=4)
  ap.add_argument("--out", default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results", "optimizers.md"))
  args = ap.parse_args(argv)
  seeds = list(range(args.seeds))
  t0 = time.time()
  rows = []
  for tname in args.tasks.split(","):
    task = TASKS[tname]()
    for oname in args.optimizers.split(","):
      good, grid_gm, best, ours = run_pair(task, OPTIMIZERS[oname], seeds)
      c = cells(good, grid_gm, best, ours)
      row = [tname, oname, f"{good:.3g}"] + [
          quality._fmt(x) if np.isfinite(x) else "-"
          for s in STARTS for x in c[s]]
      rows.append(row)
      print(" | ".join(row), flush=True)
  names = ["fixed"] + list(VARIANTS)
  head = ("| task | optimizer | good LR | " + " | ".join(
      f"{s}: {n}" for s in STARTS for n in names) + " |")
  lines = [
      "# The controller on other optimizers (report only)", "",
      "Score: final held-out loss / the best constant rate's of a half-decade "
      "grid (1e-7 ... 1), per seed, geometric mean over the seeds. `fixed`: "
      "the constant rate at that start (`-`: off the grid); `ours`: "
      "`adaptive_scale()` (defaults); `ours -drift`: the same without the "
      "drift rule; `ours W=50`: `var_window=50`; `ours dW=50`: "
      "`drift_window=50`. See the script's "
      "docstring.", "",
      head, "|---|---|---:|" + "---:|" * (len(STARTS) * len(names))]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  lines += ["", f"Seeds {seeds}; jax {jax.__version__}, optax "
            f"{optax.__version__}; {time.time() - t0:.0f} s on "
            f"{os.cpu_count()} CPU cores. Reproduce: "
            "`python benchmarks/optimizers.py`."]
  if args.out != "-":
    with open(args.out, "w", encoding="utf-8") as f:
      f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
