#!/usr/bin/env python3
"""Does the controller help training? The quality benchmark suite.

Each task (see ``_quality_tasks.py``) is trained from three starting learning
rates (the good one, 100x too low, 10x too high) by every column:

* ``fixed``: a constant LR at that start;
* ``best fixed``: the best constant LR of the 7-point log grid x0.01 ... x10
  of the good LR (one LR for all seeds, chosen on the geometric mean);
* ``cosine``: cosine decay to 0, best of the same grid;
* ``plateau``: ``optax.contrib.reduce_on_plateau()`` with its defaults;
* ``plateau~``: the same with our patience/cooldown/drop (20, 50, 0.5);
* ``reference``: ``adaptive_scale(mode="reference")``, the seed's semantics;
* ``ours``: ``adaptive_scale()``, the untuned default;
* ``prodigy``, ``dog``: ``optax.contrib``'s learning-rate-free optimizers
  (they ignore the start, so their cell is the same in the three rows);
* ``schedule-free``: ``optax.contrib``'s schedule-free optimizers (Defazio et
  al. 2024, "The Road Less Scheduled") at the start's LR, like ``fixed``, with
  their default b1 0.9 and a linear warmup over the first 5% of the steps (the
  paper and its reference code use warmup). ``schedule_free_adamw`` (default
  b2; weight decay 1e-2 on the AdamW tasks, as their base, 0 on the Adam ones)
  replaces Adam/AdamW; ``schedule_free_sgd`` replaces SGD with momentum 0.9
  (b1 0.9 plays the momentum's part) and also plain SGD: there is no
  momentum-free schedule-free SGD (b1 must be positive), the LR is the step of
  the z sequence, as plain SGD's, and b1 stays at the method's default. The
  score is taken at ``schedule_free_eval_params`` (the averaged x sequence),
  not at the raw parameters (the y sequence, where the gradients and the
  training-loss curves are taken); the bandit's score is the regret of the
  played policy, y, as for every column. Its LR is the task's, untuned: the
  schedule-free authors advise 10x-50x the usual LR for SGD and 1x-10x for
  AdamW, which the ``10x high`` row comes closer to than ``good``.

A cell's score is its final held-out loss (total regret for the bandit)
divided by the best fixed-grid point's of the same seed, as a geometric mean
over the seeds; a run that diverged counts as 1e6. Every training run is one
jitted ``lax.scan``; the seeds and grid points of a column are ``vmap``-ed.

Usage::

  python benchmarks/quality.py            # full suite (~15 min on 2 cores)
  python benchmarks/quality.py --quick    # CI-sized smoke run
  python benchmarks/quality.py --tasks seed_demo,bandit --out /tmp/q
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _quality_tasks as tasks_lib  # pylint: disable=wrong-import-position
import adaptive_optax as ao  # pylint: disable=wrong-import-position

GRID = tuple(10.0 ** (k / 2) for k in range(-4, 3))  # x0.01 ... x10
STARTS = {"good": 1.0, "100x low": 0.01, "10x high": 10.0}
DIVERGED = 1e6
COLUMNS = ("fixed", "best fixed", "cosine", "plateau", "plateau~",
           "reference", "ours", "prodigy", "dog", "schedule-free")


def _base(task, lr):
  if task.optimizer == "sgd":
    return optax.sgd(lr, momentum=0.9)
  if task.optimizer == "sgd_plain":
    return optax.sgd(lr)
  if task.optimizer == "adamw":
    return optax.adamw(lr, weight_decay=1e-2)
  return optax.adam(lr)


def scaled_steps(task, scale):
  """A task's steps at ``scale`` of its length; at least 20, one window."""
  return max(20, int(task.steps * scale))


def _run(task, make_tx, lr_of, steps, reward, seed, eval_params=None):
  """One training run under one scan: (score, per-step value, per-step lr).

  ``eval_params(opt_state, params)``, if given, maps the final parameters to
  the point that is scored (schedule-free's x sequence); default: as they are.
  """
  k_init, k_data = jax.random.split(jax.random.PRNGKey(seed))
  params = task.init(k_init)
  tx = make_tx()
  opt_state = tx.init(params)
  xs = task.stream(k_data, steps)

  def body(carry, x):
    params, opt_state, t = carry
    (_, aux), grads = jax.value_and_grad(task.step_loss, has_aux=True)(
        params, x)
    extra = {"reward": aux["reward"]} if reward else {}
    updates, opt_state = tx.update(grads, opt_state, params,
                                   value=aux["value"], **extra)
    params = optax.apply_updates(params, updates)
    out = {"value": aux["value"], "lr": lr_of(opt_state, t).astype(jnp.float32)}
    if "regret" in aux:
      out["regret"] = aux["regret"]
    return (params, opt_state, t + 1), out

  (params, opt_state, _), out = jax.lax.scan(body, (params, opt_state, 0), xs)
  if eval_params is not None:
    params = eval_params(opt_state, params)
  return task.score(params, out), out["value"], out["lr"]


def _column(task, build, args, seeds, steps, reward=False):
  """A column's runs, batched: every (arg row, seed) pair under one vmap.

  ``build(*arg_row)`` gives ``(make_tx, lr_of)`` or ``(make_tx, lr_of,
  eval_params)`` (see :func:`_run`); arg rows are traced, so one program
  serves the whole column. Returns ``(fn, inputs, shape)`` for
  :func:`_execute`.
  """
  args = np.asarray(args, np.float32)
  n_args, n_seeds = args.shape[0], len(seeds)
  a = np.repeat(args, n_seeds, axis=0)
  s = np.tile(np.asarray(seeds, np.int32), n_args)

  def one(row, seed):
    make_tx, lr_of, *rest = build(*[row[i] for i in range(args.shape[1])])
    return _run(task, make_tx, lr_of, steps, reward, seed, *rest)

  return jax.vmap(one), (jnp.asarray(a), jnp.asarray(s)), (n_args, n_seeds)


def _execute(columns):
  """Runs all columns in ONE jitted call (one compilation per task)."""
  fns = [c[0] for c in columns]
  outs = jax.jit(lambda ins: [f(*i) for f, i in zip(fns, ins)])(
      [c[1] for c in columns])
  results = []
  for (score, value, lr), (_, _, shape) in zip(outs, columns):
    results.append((np.asarray(score).reshape(shape),
                    np.asarray(value).reshape(shape + (-1,)),
                    np.asarray(lr).reshape(shape + (-1,))))
  return results


def _vrun(task, build, args, seeds, steps, reward=False):
  """One column, run on its own: (scores, values, lrs) as numpy arrays."""
  return _execute([_column(task, build, args, seeds, steps, reward)])[0]


ABLATE = ("warmup", "probe", "drift", "runaway", "spike", "patience",
          "damping", "reward")


# With --horizon: ours told the run's length (``total_steps``), whose final
# decay (the last ``decay_fraction`` of the run) is the one rule that needs it.
HORIZON = "ours +horizon"


def run_task(task, seeds, steps, ablation=False, horizon=False):
  """Every column on one task: {column: (scores, values, lrs)}.

  Arrays are indexed [row, seed(, step)]: rows are grid points for ``grid``
  and ``cosine_grid``, starts for the start-dependent columns, a single row
  for the learning-rate-free ones.
  """
  lr0 = task.lr
  starts = [STARTS[k] for k in STARTS]
  columns = {}

  # Fixed and cosine over the grid share one program (a traced switch).
  def sched(factor, cos):
    lr = lr0 * factor
    f = lambda t: lr * jnp.where(cos > 0, 0.5 * (1 + jnp.cos(
        jnp.pi * jnp.minimum(t, steps) / steps)), 1.0)
    return (lambda: _base(task, f)), (lambda s, t: f(t))
  rows = [(g, 0.0) for g in GRID] + [(g, 1.0) for g in GRID]
  columns["grids"] = _column(task, sched, rows, seeds, steps)

  # reduce_on_plateau checks its arguments in Python: they stay constants.
  for name, kw in (("plateau", {}),
                   ("plateau~", dict(patience=20, cooldown=50, factor=0.5))):
    def plateau_build(start, kw=kw):
      def make():
        return optax.chain(_base(task, lr0 * start),
                           optax.contrib.reduce_on_plateau(**kw))
      return make, lambda s, t: lr0 * start * s[1].scale
    columns[name] = _column(task, plateau_build, [(st,) for st in starts],
                            seeds, steps)

  variants = [("reference", "reference", None, {}),
              ("ours", "stable", None, {})]
  if ablation:
    variants += [(f"ours -{r}", "stable", tuple(x for x in ao_rules() if x != r),
                  {}) for r in ABLATE if r != "reward" or task.reward]
  if horizon:
    variants.append((HORIZON, "stable", None, {"total_steps": steps}))
  for name, mode, rules, extra in variants:
    def ctrl_build(start, mode=mode, rules=rules, extra=extra):
      def make():
        kw = {"use_reward": True} if task.reward else {}
        kw.update(extra)
        if rules is not None:
          kw["rules"] = rules
        return optax.chain(_base(task, lr0 * start),
                           ao.adaptive_scale(mode=mode, **kw))
      return make, lambda s, t: lr0 * start * ao.metrics(s)["scale"]
    columns[name] = _column(task, ctrl_build, [(st,) for st in starts], seeds,
                            steps, reward=task.reward)

  def prodigy_build(_):
    return optax.contrib.prodigy, lambda s, t: s.estim_lr
  def dog_build(_):
    return (optax.contrib.dog,
            lambda s, t: s[1].max_dist / jnp.sqrt(s[1].sum_sq_norm_grads + 1e-8))
  columns["prodigy"] = _column(task, prodigy_build, [(0.0,)], seeds, steps)
  columns["dog"] = _column(task, dog_build, [(0.0,)], seeds, steps)

  warmup = max(1, round(0.05 * steps))
  def schedule_free_build(start):
    lr = lr0 * start
    def make():
      if task.optimizer in ("adam", "adamw"):
        return optax.contrib.schedule_free_adamw(
            lr, warmup_steps=warmup,
            weight_decay=1e-2 if task.optimizer == "adamw" else 0.0)
      return optax.contrib.schedule_free_sgd(lr, warmup_steps=warmup, b1=0.9)
    # max_lr: the warmup schedule's LR at this step (it never decreases).
    return (make, lambda s, t: s.max_lr,
            optax.contrib.schedule_free_eval_params)
  columns["schedule-free"] = _column(
      task, schedule_free_build, [(st,) for st in starts], seeds, steps)

  res = dict(zip(columns, _execute(list(columns.values()))))
  sc, val, lr = res.pop("grids")
  n = len(GRID)
  res["grid"] = (sc[:n], val[:n], lr[:n])
  res["cosine_grid"] = (sc[n:], val[n:], lr[n:])
  return res


def ao_rules():
  from adaptive_optax import _stable  # pylint: disable=import-outside-toplevel
  return _stable.RULES


def _cells(tables, col):
  """A column's cells over the tasks' tables ({start: {column: cell}}):
  ``(all, good start, the other starts)``."""
  good, other = [], []
  for table in tables:
    for start, row in table.items():
      if col in row:
        (good if start == "good" else other).append(row[col])
  return good + other, good, other


def ablation_md(all_tables, ablations):
  """Each rule off in turn: median and worst of ours over the tasks run."""
  lines = ["| variant | median | worst | good-start worst |",
           "|---|---:|---:|---:|"]
  for col in ["ours"] + [f"ours -{r}" for r in ABLATE]:
    vals, good, _ = _cells(ablations.values(), col)
    if vals:
      lines.append(f"| {col} | {_fmt(float(np.median(vals)))} | "
                   f"{_fmt(float(np.max(vals)))} | {_fmt(float(np.max(good)))} |")
  return "\n".join(lines)


def horizon_md(all_tables):
  """ours against ours told the run's length, per cell, with median, worst
  and the worst cells the goals read (good start; 100x low / 10x high)."""
  lines = ["| task | start | ours | ours, `total_steps` given |",
           "|---|---|---:|---:|"]
  tables = [t for t, _, _, _ in all_tables.values()]
  for name, table in zip(all_tables, tables):
    for start, row in table.items():
      lines.append(f"| {name} | {start} | {_fmt(row['ours'])} | "
                   f"{_fmt(row[HORIZON])} |")
  cols = [_cells(tables, c)[0] for c in ("ours", HORIZON)]
  for label, f in (("median", np.median), ("worst", np.max)):
    lines.append(f"| **{label}** | all | " + " | ".join(
        _fmt(float(f(v))) for v in cols) + " |")
  h, good, other = _cells(tables, HORIZON)
  lines += ["", "With `total_steps` given: good start worst "
            f"{_fmt(max(good))}, 100x low / 10x high worst "
            f"{_fmt(max(other))}, median {_fmt(float(np.median(h)))}"
            f", worst {_fmt(max(h))}."]
  return "\n".join(lines)


def _clean(x):
  return np.where(np.isfinite(x), x, np.inf)


def _ratios(scores, best):
  """Per-seed ratio to the best grid point, diverged runs at DIVERGED."""
  r = _clean(scores) / best
  return np.clip(np.where(np.isfinite(r), r, DIVERGED), 0, DIVERGED)


def _geomean(r):
  return float(np.exp(np.mean(np.log(np.maximum(r, 1e-12)), axis=-1)))


def score_task(res):
  """{start: {column: geomean ratio}}, and the best grid/cosine factors."""
  grid = _clean(res["grid"][0])  # (7, seeds)
  best = np.min(grid, axis=0)  # per seed
  grid_gm = [_geomean(_ratios(g, best)) for g in grid]
  cos_gm = [_geomean(_ratios(g, best)) for g in _clean(res["cosine_grid"][0])]
  i_best, i_cos = int(np.argmin(grid_gm)), int(np.argmin(cos_gm))
  table = {}
  for j, (start, factor) in enumerate(STARTS.items()):
    i_start = GRID.index(factor) if factor in GRID else min(
        range(len(GRID)), key=lambda i: abs(math.log(GRID[i] / factor)))
    row = {"fixed": grid_gm[i_start], "best fixed": grid_gm[i_best],
           "cosine": cos_gm[i_cos]}
    for col in ("plateau", "plateau~", "reference", "ours"):
      row[col] = _geomean(_ratios(res[col][0][j], best))
    for col in ("prodigy", "dog"):
      row[col] = _geomean(_ratios(res[col][0][0], best))
    row["schedule-free"] = _geomean(_ratios(res["schedule-free"][0][j], best))
    for col in res:
      if col.startswith("ours "):
        row[col] = _geomean(_ratios(res[col][0][j], best))
    table[start] = row
  return table, GRID[i_best], GRID[i_cos], best


def _fmt(x):
  if x >= DIVERGED * 0.999:
    return "div"
  if x >= 100:
    return f"{x:.0f}"
  return f"{x:.2f}"


def markdown(all_tables, meta):
  lines = [
      "| task | start | " + " | ".join(COLUMNS) + " |",
      "|---|---|" + "---:|" * len(COLUMNS),
  ]
  per_col = {c: [] for c in COLUMNS}
  for name, (table, _, _, _) in all_tables.items():
    for start, row in table.items():
      cells = []
      row = {c: v for c, v in row.items() if c in COLUMNS}
      for c in COLUMNS:
        per_col[c].append(row[c])
        cell = _fmt(row[c])
        cells.append(f"**{cell}**" if c == "ours" else cell)
      lines.append(f"| {name} | {start} | " + " | ".join(cells) + " |")
  med = {c: float(np.median(v)) for c, v in per_col.items()}
  worst = {c: float(np.max(v)) for c, v in per_col.items()}
  lines.append("| **median** | all | " + " | ".join(_fmt(med[c]) for c in COLUMNS)
               + " |")
  lines.append("| **worst** | all | "
               + " | ".join(_fmt(worst[c]) for c in COLUMNS) + " |")
  lines.append("")
  lines.append("Best grid factors (x good LR): " + ", ".join(
      f"{n}: fixed x{f:g}, cosine x{c:g}"
      for n, (_, f, c, _) in all_tables.items()) + ".")
  lines.append("")
  lines.append(meta)
  return "\n".join(lines), per_col, med, worst


def goals(all_tables, per_col, med, worst):
  """The goals for ``ours`` (issue 10, C), as a markdown list with pass/fail."""
  ok = lambda b: "PASS" if b else "FAIL"
  _, good, bad = _cells([t for t, _, _, _ in all_tables.values()], "ours")
  peers = {c: med[c] for c in ("plateau", "prodigy", "dog", "schedule-free")}
  out = [
      f"- good start within 1.1x of the best fixed LR: worst "
      f"{max(good):.2f} -> {ok(max(good) <= 1.1)}",
      f"- 100x low / 10x high within 2x: worst {max(bad):.2f} -> "
      f"{ok(max(bad) <= 2.0)}",
      f"- median <= 1.15: {med['ours']:.2f} -> {ok(med['ours'] <= 1.15)}",
      f"- worst <= 2.5: {worst['ours']:.2f} -> {ok(worst['ours'] <= 2.5)}",
      "- median better than " + ", ".join(
          f"{c} ({v:.2f})" for c, v in peers.items())
      + f": {med['ours']:.2f} -> {ok(med['ours'] < min(peers.values()))}",
  ]
  return "\n".join(out)


def plot(name, task, res, path, smooth=0.98):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  def ema(v):
    out, acc = np.empty_like(v), v[0]
    for i, x in enumerate(v):
      acc = smooth * acc + (1 - smooth) * x if np.isfinite(x) else acc
      out[i] = acc
    return out

  fig, axes = plt.subplots(2, 3, figsize=(15, 7), sharex=True)
  cos_i = int(np.argmin(np.mean(np.log(_clean(res["cosine_grid"][0])), 1)))
  best_i = int(np.argmin(np.mean(np.log(_clean(res["grid"][0])), 1)))
  for j, (start, factor) in enumerate(STARTS.items()):
    i_start = GRID.index(factor)
    curves = {
        "fixed": (res["grid"][1][i_start, 0], res["grid"][2][i_start, 0]),
        "best fixed": (res["grid"][1][best_i, 0], res["grid"][2][best_i, 0]),
        "cosine": (res["cosine_grid"][1][cos_i, 0],
                   res["cosine_grid"][2][cos_i, 0]),
    }
    for col in ("plateau", "plateau~", "reference", "ours"):
      curves[col] = (res[col][1][j, 0], res[col][2][j, 0])
    for col in ("prodigy", "dog"):
      curves[col] = (res[col][1][0, 0], res[col][2][0, 0])
    curves["schedule-free"] = (res["schedule-free"][1][j, 0],
                               res["schedule-free"][2][j, 0])
    for col, (v, lr) in curves.items():
      kw = dict(lw=2.2, color="k") if col == "ours" else dict(lw=1, alpha=0.8)
      axes[0, j].plot(ema(v), label=col, **kw)
      axes[1, j].plot(lr, label=col, **kw)
    axes[0, j].set_title(f"{task.title}\nstart: {start} (x{factor:g})",
                         fontsize=9)
    axes[0, j].set_yscale("log")
    axes[1, j].set_yscale("log")
    # Diverged losses and plateau's decay to 0 would flatten every other line.
    v0 = float(curves["ours"][0][0])  # step 0: before any update, shared
    if np.isfinite(v0) and v0 > 0:
      axes[0, j].set_ylim(top=10 * v0)
    axes[1, j].set_ylim(task.lr * 1e-4, task.lr * 1e3)
    axes[1, j].set_xlabel("step")
  axes[0, 0].set_ylabel("training loss (EMA), seed 0")
  axes[1, 0].set_ylabel("applied learning rate")
  axes[0, 2].legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--quick", action="store_true",
                  help="CI-sized: seed demo only, 2 seeds, 1/20 of the steps")
  ap.add_argument("--tasks", default=None,
                  help="comma-separated task names (default: all)")
  ap.add_argument("--seeds", type=int, default=None)
  ap.add_argument("--steps-scale", type=float, default=None)
  ap.add_argument("--out", default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results"))
  ap.add_argument("--no-plots", action="store_true")
  ap.add_argument("--split", choices=("holdout", "tune", "all"),
                  default="all", help="which fixed half of the tasks to run")
  ap.add_argument("--ablation", action="store_true",
                  help="also run ours with each stable rule off in turn")
  ap.add_argument("--horizon", action="store_true",
                  help="also run ours told the run's length (total_steps)")
  args = ap.parse_args(argv)

  makers = {f.__name__: f for f in tasks_lib.ALL}
  split = {"holdout": tasks_lib.HOLDOUT, "tune": tasks_lib.TUNE,
           "all": tasks_lib.HOLDOUT + tasks_lib.TUNE}[args.split]
  if args.tasks:
    names = args.tasks.split(",")
  elif args.quick:
    names = ["seed_demo"]
  else:
    names = [f.__name__ for f in split]
  n_seeds = args.seeds or (2 if args.quick else 3)
  scale = args.steps_scale or (0.05 if args.quick else 1.0)
  seeds = list(range(n_seeds))
  os.makedirs(args.out, exist_ok=True)

  all_tables, timings = {}, {}
  for name in names:
    task = makers[name]()
    steps = scaled_steps(task, scale)
    t0 = time.time()
    res = run_task(task, seeds, steps, ablation=args.ablation,
                   horizon=args.horizon)
    timings[task.name] = time.time() - t0
    all_tables[task.name] = score_task(res)
    print(f"{task.name}: {steps} steps x {n_seeds} seeds in "
          f"{timings[task.name]:.0f} s", file=sys.stderr, flush=True)
    for start, row in all_tables[task.name][0].items():
      print(f"  {start:9s} " + " ".join(f"{c}={_fmt(v)}" for c, v in row.items()),
            file=sys.stderr, flush=True)
    if not args.no_plots:
      plot(task.name, task, res, os.path.join(args.out,
                                              f"quality_{task.name}.png"))

  meta = (f"Seeds {seeds}; steps scale {scale:g}; jax {jax.__version__}, optax "
          f"{optax.__version__}; {sum(timings.values()):.0f} s on "
          f"{os.cpu_count()} CPU cores. Reproduce: `python benchmarks/quality.py"
          f"{' --quick' if args.quick else ''}`.")
  table_md, per_col, med, worst = markdown(all_tables, meta)
  goals_md = goals(all_tables, per_col, med, worst)
  doc = ("# Quality benchmark\n\nScore: final held-out loss (total regret for "
         "the bandit) / best fixed-grid LR's, per seed, geometric mean over "
         "seeds; 1.00 = as good as the best constant LR; `div` = diverged "
         "(counted as 1e6).\n\n" + table_md + "\n\n## Goals for `ours`\n\n"
         + goals_md + "\n")
  if args.ablation:
    doc += ("\n## Ablation: each stable rule off in turn\n\n"
            + ablation_md(all_tables, {n: t[0] for n, t in all_tables.items()})
            + "\n")
  if args.horizon:
    doc += ("\n## With the horizon given: `adaptive_scale(total_steps=<the "
            "run's steps>)`\n\n" + horizon_md(all_tables) + "\n")
  stem = "quality" if args.split == "all" or args.tasks or args.quick else (
      f"quality_{args.split}")
  with open(os.path.join(args.out, f"{stem}.md"), "w") as f:
    f.write(doc)
  print(doc)


if __name__ == "__main__":
  main()
