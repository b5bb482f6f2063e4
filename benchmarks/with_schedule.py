"""A check outside the quality suite: ``adaptive_scale()`` on top of a schedule.

The quality suite's digits data and MLP (64-128-10 here), AdamW (weight decay
1e-4), batches of 32, 1,500 steps, trained and scored by the suite's own
``quality._run`` (held-out cross-entropy, geometric mean over seeds), for a
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

import adaptive_optax as ao

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# pylint: disable=wrong-import-position
import _quality_tasks as tasks_lib  # noqa: E402
import _timing  # noqa: E402
import quality as q  # noqa: E402

BATCH = 32


def warmup_steps(steps: int) -> int:
  return max(1, steps // 15)  # 100 of 1,500


def task(steps: int) -> tasks_lib.Task:
  """The suite's digits data and MLP (64-128-10), scored on held-out loss."""
  # pylint: disable=protected-access
  return tasks_lib._supervised(
      "digits_schedule", "digits (MLP 64-128-10, AdamW)", "adamw", 1e-3,
      steps, BATCH, (64, 128, 10), *tasks_lib._digits(), "ce")


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


def score(make_tx, peak: float, seeds: int, the_task) -> float:
  def run(seed):
    held_out, _, _ = q._run(  # pylint: disable=protected-access
        the_task, lambda: make_tx(peak), lambda s, t: jnp.ones(()),
        the_task.steps, False, seed)
    return held_out

  held_out = jax.jit(jax.vmap(run))(jnp.arange(seeds))
  return float(np.exp(np.mean(np.log(np.asarray(held_out)))))


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--peaks", default="1e-4,1e-3,1e-2,3e-2,1e-1,3e-1")
  ap.add_argument("--seeds", type=int, default=4)
  ap.add_argument("--steps", type=int, default=1500)
  _timing.add_out_argument(ap, "with_schedule.md")
  args = ap.parse_args(argv)
  load0 = _timing.load_average()
  peaks = [float(p) for p in args.peaks.split(",")]
  the_task = task(args.steps)
  rows = []
  for name, make in variants(args.steps).items():
    rows.append([name] + [f"{score(make, p, args.seeds, the_task):.4f}"
                          for p in peaks])
    print(" ".join(rows[-1]), flush=True)
  body = _timing.table(["variant"] + [f"peak {p:g}" for p in peaks], rows)
  _timing.report(
      "adaptive_scale() on top of a schedule: digits MLP, AdamW", body,
      args.out, load0,
      extra={"score": "held-out cross-entropy, geometric mean over "
                      f"{args.seeds} seeds",
             "steps": f"{args.steps}, batch {BATCH}, warm-up "
                      f"{warmup_steps(args.steps)}"})


if __name__ == "__main__":
  main()
