#!/usr/bin/env python3
"""What the stable policy did, step by step, on one TUNE task: a debugging aid.

Trains one tune task of ``benchmarks/quality.py`` with ``adaptive_scale()``
from one start and seed (the suite's initialisation and data order for that
seed), in one jitted ``lax.scan``, and prints the loss and
the chosen controller fields (``adaptive_optax.ControllerState`` names, see
``_state.SCHEMA``) every ``--every`` steps, then the task's score. Holdout
tasks are refused, as in ``tune_ours.py``: rules are designed by reading the
tune tasks only. Usage::

  python benchmarks/trace.py seed_demo --start "10x high" --seed 2 --every 1 \\
      --steps 40 --fields warmup,stored_rate,applied_rate,spikes
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _quality_tasks as tasks_lib  # pylint: disable=wrong-import-position
import quality as q  # pylint: disable=wrong-import-position
import adaptive_optax as ao  # pylint: disable=wrong-import-position
from adaptive_optax import _state  # pylint: disable=wrong-import-position

DEFAULT_FIELDS = "stored_rate,applied_rate,probing,spikes,cooldown_left,trial"


def trace(task, start: float, seed: int, steps: int, fields):
  """(score, per-step {"value": losses, field: values}) of one run: the
  suite's own run (``quality._run``), recording the fields where it records
  the rate."""
  extra = {"use_reward": True} if task.reward else {}
  make_tx = lambda: optax.chain(  # noqa: E731
      q._base(task, task.lr * start),  # pylint: disable=protected-access
      ao.adaptive_scale(**extra))

  def record(opt_state, _):
    (ctrl,) = _state.controllers_in(opt_state)
    return jnp.stack([jnp.asarray(getattr(ctrl, k), jnp.float32)
                      for k in fields], axis=-1)

  score, value, rows = jax.jit(lambda: q._run(  # pylint: disable=protected-access
      task, make_tx, record, steps, task.reward, seed))()
  return float(score), {"value": value, **{k: rows[:, i] for i, k in
                                           enumerate(fields)}}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  tune = {f.__name__: f for f in tasks_lib.TUNE}
  ap.add_argument("task", help=f"one of {sorted(tune)}")
  ap.add_argument("--start", default="good", choices=sorted(q.STARTS))
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--steps", type=int, default=None,
                  help="default: the task's own length")
  ap.add_argument("--every", type=int, default=10)
  ap.add_argument("--fields", default=DEFAULT_FIELDS)
  args = ap.parse_args(argv)
  if args.task not in tune:
    ap.error(f"{args.task!r} is not a tune task ({sorted(tune)}); holdout "
             "tasks run only in quality.py")
  fields = [f for f in args.fields.split(",") if f]
  scalars = set(_state.Fields._fields) - {_state.WINDOW_NAME}
  unknown = sorted(set(fields) - scalars)
  if unknown:
    ap.error(f"unknown --fields {unknown}; the scalar fields are "
             f"{sorted(scalars)}")
  task = tune[args.task]()
  steps = args.steps or task.steps
  score, out = trace(task, q.STARTS[args.start], args.seed, steps, fields)
  print("step value " + " ".join(fields))
  for t in range(0, steps, args.every):
    row = " ".join(f"{float(out[k][t]):.4g}" for k in fields)
    print(f"{t} {float(out['value'][t]):.4g} {row}")
  print(f"score {score:.6g}  ({args.task}, {args.start}, seed {args.seed}, "
        f"{steps} steps)")


if __name__ == "__main__":
  main()
