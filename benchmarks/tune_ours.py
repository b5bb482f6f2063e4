#!/usr/bin/env python3
"""Scores variants of ``ours`` on tasks against each seed's best fixed LR.

A development tool for choosing rules on the TUNE tasks only: the grid of
fixed LRs is run once per task and cached; each variant then costs one
column. Usage::

  python benchmarks/tune_ours.py --tasks seed_demo,wine_sgd \
      --variant default --variant 'no_probe:rules=runaway,spike,patience,damping'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _quality_tasks as tasks_lib  # pylint: disable=wrong-import-position
import quality as q  # pylint: disable=wrong-import-position
import adaptive_optax as ao  # pylint: disable=wrong-import-position

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                     ".grid_cache")


def best_fixed(task, seeds, steps):
  path = os.path.join(CACHE, f"{task.name}_{len(seeds)}_{steps}.json")
  if os.path.exists(path):
    with open(path) as f:
      return np.asarray(json.load(f))
  def sched(factor):
    return (lambda: q._base(task, task.lr * factor)), (lambda s, t: jnp.ones(()))
  sc, _, _ = q._vrun(task, sched, [(g,) for g in q.GRID], seeds, steps)
  best = np.min(q._clean(sc), axis=0)
  os.makedirs(CACHE, exist_ok=True)
  with open(path, "w") as f:
    json.dump(best.tolist(), f)
  return best


def parse_variant(text):
  name, _, kw = text.partition(":")
  out = {}
  for item in filter(None, kw.split(";")):
    k, _, v = item.partition("=")
    if k == "rules":
      out[k] = tuple(filter(None, v.split(",")))
    elif v == "run":  # total_steps=run: the horizon is the run's length
      out[k] = v
    else:  # integers stay integers (windows, step counts)
      out[k] = int(v) if v.lstrip("-").isdigit() else float(v)
  return name, out


def main(argv=None):
  ap = argparse.ArgumentParser()
  ap.add_argument("--tasks", required=True)
  ap.add_argument("--variant", action="append", default=[])
  ap.add_argument("--seeds", type=int, default=3)
  ap.add_argument("--steps-scale", type=float, default=1.0,
                  help="run each task for this fraction of its steps (as quality.py)")
  args = ap.parse_args(argv)
  # Rules and constants are chosen on the tune split only.
  makers = {f.__name__: f for f in tasks_lib.TUNE}
  unknown = set(args.tasks.split(",")) - set(makers)
  if unknown:
    ap.error(f"--tasks: {sorted(unknown)} not in the tune split "
             f"{sorted(makers)} (holdout tasks run only in quality.py)")
  seeds = list(range(args.seeds))
  variants = [parse_variant(v) for v in (args.variant or ["default"])]
  for name in args.tasks.split(","):
    task = makers[name]()
    t0 = time.time()
    steps = q.scaled_steps(task, args.steps_scale)
    best = best_fixed(task, seeds, steps)
    for vname, kw in variants:
      kw = {k: steps if v == "run" else v for k, v in kw.items()}
      def build(start, kw=kw):
        def make():
          extra = {"use_reward": True} if task.reward else {}
          return optax.chain(q._base(task, task.lr * start),
                             ao.adaptive_scale(**extra, **kw))
        return make, lambda s, t: task.lr * start * ao.metrics(s)["scale"]
      sc, _, lr = q._vrun(task, build, [(v,) for v in q.STARTS.values()],
                          seeds, steps, reward=task.reward)
      cells = [q._geomean(q._ratios(sc[j], best)) for j in range(3)]
      fin = [float(np.exp(np.mean(np.log(lr[j, :, -1] / task.lr))))
             for j in range(3)]
      print(f"{name:14s} {vname:12s} " + " ".join(
          f"{s}={q._fmt(c)}(lr x{f:.2g})" for s, c, f in
          zip(q.STARTS, cells, fin)) + f"  [{time.time()-t0:.0f}s]",
            flush=True)


if __name__ == "__main__":
  main()
