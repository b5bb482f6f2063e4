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
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _quality_tasks as tasks_lib  # pylint: disable=wrong-import-position
import quality as q  # pylint: disable=wrong-import-position
import adaptive_optax as ao  # pylint: disable=wrong-import-position
from adaptive_optax import _state  # pylint: disable=wrong-import-position

DEFAULT_FIELDS = "stored_rate,applied_rate,probing,spikes,cooldown_left,trial"


def _controller(state) -> ao.ControllerState:
  """The one ControllerState inside an optax chain's state."""
  found = [x for x in jax.tree.leaves(
      state, is_leaf=lambda x: isinstance(x, ao.ControllerState))
           if isinstance(x, ao.ControllerState)]
  if len(found) != 1:
    raise ValueError(f"expected one controller state, found {len(found)}")
  return found[0]


def trace(task, start: float, seed: int, steps: int, fields):
  """(score, per-step {"value": losses, field: values}) of one run."""
  extra = {"use_reward": True} if task.reward else {}
  tx = optax.chain(q._base(task, task.lr * start),  # pylint: disable=protected-access
                   ao.adaptive_scale(**extra))
  k_init, k_data = jax.random.split(jax.random.PRNGKey(seed))
  params = task.init(k_init)
  xs = task.stream(k_data, steps)

  def body(carry, x):
    p, s = carry
    (_, aux), g = jax.value_and_grad(task.step_loss, has_aux=True)(p, x)
    feed = {"reward": aux["reward"]} if task.reward else {}
    u, s = tx.update(g, s, p, value=aux["value"], **feed)
    f = _controller(s).unpack()
    return (optax.apply_updates(p, u), s), (aux, {k: getattr(f, k) for k in fields})

  run = jax.jit(lambda p, s: jax.lax.scan(body, (p, s), xs))
  (params, _), (aux, out) = run(params, tx.init(params))
  return float(task.score(params, aux)), {"value": aux["value"], **out}


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
