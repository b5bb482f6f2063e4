#!/usr/bin/env python3
"""Does the controller keep PPO learning? The RL benchmark (issue 10).

PPO (``_rl_tasks.py``, written from Schulman et al. 2017) on gymnax
CartPole-v1 and Acrobot-v1, from the good learning rate (Adam 2.5e-4) and from
100x too low (2.5e-6), 4 seeds. Columns differ only by the optimizer:

* ``adam``: ``chain(clip, adam(lr))``, constant;
* ``scale(loss)``: ``chain(clip, adam(lr), ao.adaptive_scale())`` fed the PPO
  minibatch loss only (the untuned default);
* ``hyper(reward)``: ``chain(clip, ao.adaptive_hyperparams(optax.adam,
  learning_rate=lr, use_reward=True))`` fed the loss and the reward;
* ``scale(rl)``: ``chain(clip, adam(lr), ao.adaptive_scale(preset="rl"))`` fed
  the loss and the reward (the ``rl`` preset on the other front end);
* ``plateau``: ``chain(clip, adam(lr), optax.contrib.reduce_on_plateau())``
  with its defaults, fed the loss.

``clip`` is ``optax.clip_by_global_norm(0.5)``. The reward is the mean return
of the episodes completed in the latest rollout (NaN when none completed: the
controller treats it as "no reward this step"). A run's score is the mean
return of the episodes completed in the last 10% of training; the ``random``
row is the untrained (near-uniform) policy over as many rollouts.

Each column is one jitted program: the whole training is a ``lax.scan``,
``vmap``-ed over (start, seed) pairs with the learning rate traced.

Usage::

  python benchmarks/rl.py                       # both envs, 4 seeds (~25 min)
  python benchmarks/rl.py --envs CartPole-v1 --seeds 2
  python benchmarks/rl.py --quick --out /tmp/rl  # smoke run (tiny budget)

From Python, any optimizer::

  from rl import run_rl
  res = run_rl("CartPole-v1", lambda lr: optax.adam(lr), seeds=range(4))
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _rl_tasks as rl_tasks  # pylint: disable=wrong-import-position
import adaptive_optax as ao  # pylint: disable=wrong-import-position

STARTS = {"good": 1.0, "100x low": 0.01}
TAIL = 0.1  # the scored fraction of training


# ------------------------------------------------------------------ runner --

def run_rl(env_name: str, make_tx: rl_tasks.TxFactory, seeds: Sequence[int],
           *, lr_factors: Sequence[float] = tuple(STARTS.values()),
           reward: bool = False, lr_of: rl_tasks.LrOf = rl_tasks.constant_lr,
           config: rl_tasks.PPOConfig | None = None) -> dict[str, Any]:
  """PPO with one optimizer, every (LR factor, seed) pair in one program.

  Args:
    env_name: ``"CartPole-v1"`` or ``"Acrobot-v1"``.
    make_tx: ``make_tx(learning_rate)`` gives the optimizer; the rate is
      traced (``config.base_lr`` times a factor), so one compile serves every
      factor. Clip inside it if you want clipping.
    seeds: integer seeds.
    lr_factors: multipliers of ``config.base_lr``, one row each.
    reward: also pass ``reward=`` (mean completed-episode return of the
      latest rollout, NaN if none) to ``tx.update``.
    lr_of: ``lr_of(opt_state, learning_rate)``, the applied LR to log.
    config: PPO settings; ``rl_tasks.default_config(env_name)`` if None.

  Returns:
    A dict of numpy arrays indexed ``[factor, seed(, update)]``: ``score``
    (mean return over the last 10% of training), ``final_lr`` (applied LR at
    the end, in units of ``config.base_lr``), ``returns`` (per-update mean
    completed return, NaN when none ended), ``lr`` (per update, in units of
    ``base_lr``), ``loss`` (mean minibatch loss per update); and ``wall_s``
    (compile and run), ``compile_s``, ``timesteps`` (per update).

  Example:
    >>> cfg = rl_tasks.PPOConfig(total_timesteps=256, num_steps=32,
    ...                          update_epochs=1, num_minibatches=2, hidden=8)
    >>> res = run_rl("CartPole-v1", optax.adam, seeds=[0],
    ...              lr_factors=[1.0], config=cfg)  # doctest: +SKIP
    >>> res["score"].shape  # doctest: +SKIP
    (1, 1)
  """
  cfg = config or rl_tasks.default_config(env_name)
  seeds = [int(s) for s in seeds]
  if not seeds:
    raise ValueError("seeds must name at least one seed, got an empty list.")
  factors = np.asarray(lr_factors, np.float32)
  if factors.ndim != 1 or not factors.size or not np.all(factors > 0):
    raise ValueError(
        f"lr_factors must be a non-empty list of positive numbers, got "
        f"{list(lr_factors)!r}.")
  n_f, n_s = len(factors), len(seeds)
  lrs = jnp.asarray(np.repeat(factors, n_s) * cfg.base_lr)
  ss = jnp.asarray(np.tile(np.asarray(seeds, np.int32), n_f))

  nets = rl_tasks.initial_networks(env_name, ss, cfg.hidden)
  program = batched_train(env_name, make_tx, cfg, reward, lr_of)

  t0 = time.perf_counter()
  compiled = jax.jit(program).lower(lrs, ss, nets).compile()
  t1 = time.perf_counter()
  out = jax.device_get(jax.block_until_ready(compiled(lrs, ss, nets)))
  t2 = time.perf_counter()

  shape = (n_f, n_s, cfg.num_updates)
  ret_sum = np.asarray(out["return_sum"]).reshape(shape)
  episodes = np.asarray(out["episodes"]).reshape(shape)
  lr = np.asarray(out["lr"]).reshape(shape) / cfg.base_lr
  with np.errstate(invalid="ignore", divide="ignore"):
    returns = np.where(episodes > 0, ret_sum / np.maximum(episodes, 1), np.nan)
  return {
      "score": rl_tasks.final_return(ret_sum, episodes, TAIL),
      "final_lr": lr[..., -1],
      "returns": returns,
      "lr": lr,
      "loss": np.asarray(out["loss"]).reshape(shape),
      "wall_s": t2 - t0,
      "compile_s": t1 - t0,
      "timesteps": cfg.batch_size,
  }


def batched_train(env_name, make_tx, cfg, reward=False,
                  lr_of=rl_tasks.constant_lr):
  """``rl_tasks.train`` vmapped over (rate, seed, initial network): the
  networks come in from :func:`rl_tasks.initial_networks`, so the program
  holds no batched QR (see there)."""
  def one(lr, seed, net):
    return rl_tasks.train(env_name, make_tx, lr, seed, cfg, reward=reward,
                          lr_of=lr_of, params=net)
  return jax.vmap(one)


def random_policy(env_name: str, seeds: Sequence[int],
                  config: rl_tasks.PPOConfig | None = None) -> np.ndarray:
  """Score of the untrained policy per seed, over as many rollouts as the
  scored tail of a training run."""
  cfg = config or rl_tasks.default_config(env_name)
  n = max(1, int(round(cfg.num_updates * TAIL)))
  ss = jnp.asarray(list(seeds), jnp.int32)
  nets = rl_tasks.initial_networks(env_name, ss, cfg.hidden)
  fn = jax.jit(jax.vmap(
      lambda s, net: rl_tasks.untrained_returns(env_name, s, cfg, n, net)))
  ret, count = jax.device_get(fn(ss, nets))
  return rl_tasks.final_return(ret, count, fraction=1.0)


# ----------------------------------------------------------------- columns --

@dataclasses.dataclass(frozen=True)
class Column:
  """An optimizer under test: its factory, how to read its LR, and whether
  it takes the reward."""

  make_tx: rl_tasks.TxFactory
  lr_of: rl_tasks.LrOf
  reward: bool
  doc: str


def _clip(cfg):
  return optax.clip_by_global_norm(cfg.max_grad_norm)


def columns(cfg: rl_tasks.PPOConfig) -> dict[str, Column]:
  """The benchmark's columns, keyed by table name."""
  clip = lambda: _clip(cfg)
  scale_lr = lambda s, lr: lr * ao.metrics(s)["scale"]
  hyper_lr = lambda s, lr: ao.metrics(s)["learning_rate"]
  return {
      "adam": Column(
          lambda lr: optax.chain(clip(), optax.adam(lr)),
          rl_tasks.constant_lr, False, "constant Adam"),
      "scale(loss)": Column(
          lambda lr: optax.chain(clip(), optax.adam(lr), ao.adaptive_scale()),
          scale_lr, False, "adaptive_scale() after Adam, fed the loss"),
      "hyper(reward)": Column(
          lambda lr: optax.chain(clip(), ao.adaptive_hyperparams(
              optax.adam, learning_rate=lr, use_reward=True)),
          hyper_lr, True,
          "adaptive_hyperparams(adam, use_reward=True), loss + reward"),
      "scale(rl)": Column(
          lambda lr: optax.chain(clip(), optax.adam(lr),
                                 ao.adaptive_scale(preset="rl")),
          scale_lr, True, "adaptive_scale(preset='rl'), loss + reward"),
      "plateau": Column(
          lambda lr: optax.chain(clip(), optax.adam(lr),
                                 optax.contrib.reduce_on_plateau()),
          lambda s, lr: lr * s[2].scale, False,
          "optax.contrib.reduce_on_plateau() defaults, fed the loss"),
  }


# The reward-driven front ends that the RL goals grade.
REWARD_COLUMNS = ("hyper(reward)", "scale(rl)")
LOSS_ONLY_DEFAULT = "scale(loss)"


# ------------------------------------------------------------------- goals --

def _within(x, ref, tol):
  """x is no worse than ref by more than tol * |ref| (higher is better)."""
  return bool(np.isfinite(x) and x >= ref - tol * abs(ref))


def goals(scores: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
          random: Mapping[str, np.ndarray]) -> list[tuple[str, str, bool, str]]:
  """The issue's RL goals, each as ``(env, goal, passed, detail)``.

  Args:
    scores: ``scores[env][column][start]`` -> per-seed final returns.
    random: ``random[env]`` -> per-seed untrained-policy returns.

  Returns:
    One row per (env, goal, column graded), on seed means.
  """
  rows = []
  for env, cols in scores.items():
    m = lambda c, s: float(np.nanmean(cols[c][s])) if c in cols else np.nan
    adam = m("adam", "good")
    rand = float(np.nanmean(random[env])) if env in random else np.nan
    for c in REWARD_COLUMNS:
      if c not in cols:
        continue
      x = m(c, "good")
      rows.append((env, f"{c} good start within 10% of adam", _within(
          x, adam, 0.10), f"{x:.1f} vs adam {adam:.1f}"))
      y = m(c, "100x low")
      gain, need = y - rand, 0.5 * (adam - rand)
      rows.append((env, f"{c} 100x low: >= half adam's gain over random",
                   bool(np.isfinite(gain) and gain >= need),
                   f"gain {gain:.1f} vs needed {need:.1f} "
                   f"(random {rand:.1f})"))
    if LOSS_ONLY_DEFAULT in cols:
      x = m(LOSS_ONLY_DEFAULT, "good")
      rows.append((env, f"{LOSS_ONLY_DEFAULT} good start within 25% of adam",
                   _within(x, adam, 0.25), f"{x:.1f} vs adam {adam:.1f}"))
  return rows


# ------------------------------------------------------------------ report --

def _cell(x):
  x = np.asarray(x, float)
  if not np.any(np.isfinite(x)):
    return "nan"
  return f"{np.nanmean(x):.1f} ± {np.nanstd(x):.1f}"


def _gmean(x):
  """Geometric mean of the finite values; 0 when one is 0 (an LR that
  underflowed, as reduce_on_plateau's scale does with min_scale=0)."""
  x = np.asarray(x, float)
  x = x[np.isfinite(x)]
  if not x.size:
    return float("nan")
  if np.any(x <= 0):
    return 0.0
  return float(np.exp(np.mean(np.log(x))))


def table(results, random) -> str:
  """Markdown: rows (column, start), per env the return and final LR."""
  envs = list(results)
  head = "| column | start | " + " | ".join(
      f"{e} return | {e} LR end (x2.5e-4)" for e in envs) + " |"
  lines = [head, "|" + "---|" * (2 + 2 * len(envs))]
  names = list(next(iter(results.values())))
  for c in names:
    for s in STARTS:
      cells = []
      for e in envs:
        r = results[e][c]
        cells += [_cell(r["score"][s]), f"{_gmean(r['final_lr'][s]):.3g}"]
      lines.append(f"| {c} | {s} | " + " | ".join(cells) + " |")
  lines.append("| random (untrained) | - | " + " | ".join(
      f"{_cell(random[e])} | -" for e in envs) + " |")
  return "\n".join(lines)


def timing_table(results) -> str:
  envs = list(results)
  lines = ["| column | " + " | ".join(
      f"{e} wall s (compile s)" for e in envs) + " |",
           "|" + "---|" * (1 + len(envs))]
  for c in next(iter(results.values())):
    lines.append(f"| {c} | " + " | ".join(
        f"{results[e][c]['wall_s']:.0f} ({results[e][c]['compile_s']:.0f})"
        for e in envs) + " |")
  return "\n".join(lines)


def goals_table(rows) -> str:
  lines = ["| env | goal | result | detail |", "|---|---|---|---|"]
  for env, goal, ok, detail in rows:
    lines.append(f"| {env} | {goal} | {'PASS' if ok else 'FAIL'} | {detail} |")
  return "\n".join(lines)


def plot(results, path):
  """Smoothed return curves (seed mean) and LR per column, per env/start."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  envs = list(results)
  fig, axes = plt.subplots(2, 2 * len(envs), figsize=(5 * 2 * len(envs), 7),
                           squeeze=False)
  for j, e in enumerate(envs):
    for k, s in enumerate(STARTS):
      ax_r, ax_l = axes[0, 2 * j + k], axes[1, 2 * j + k]
      for c, r in results[e].items():
        i = list(STARTS).index(s)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
          warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN updates
          ret = np.nanmean(r["returns"][i], axis=0)
          ret = np.nan_to_num(ret, nan=np.nanmean(ret))
        w = max(1, ret.size // 30)
        ret = np.convolve(ret, np.ones(w) / w, mode="valid")
        x = (np.arange(ret.size) + w) * r["timesteps"]
        ax_r.plot(x, ret, label=c)
        ax_l.semilogy((np.arange(r["lr"].shape[-1]) + 1) * r["timesteps"],
                      np.exp(np.mean(np.log(np.maximum(r["lr"][i], 1e-12)),
                                     axis=0)), label=c)
      ax_r.set_title(f"{e}, {s} start: return")
      ax_l.set_title(f"{e}, {s} start: LR / 2.5e-4")
      ax_l.set_xlabel("env steps")
  axes[0, 0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


# --------------------------------------------------------------------- CLI --

def _provenance() -> str:
  """The commit the policy came from, and whether it had local edits: the
  working tree is shared and the policy changes under it."""
  import subprocess  # pylint: disable=import-outside-toplevel
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                          capture_output=True, text=True, check=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "adaptive_optax"],
                           cwd=root, capture_output=True, text=True,
                           check=True)
  except (OSError, subprocess.CalledProcessError):
    return "policy: unknown commit"
  edits = " + uncommitted edits in adaptive_optax/" if dirty.stdout else ""
  return f"policy: commit {head.stdout.strip()}{edits}"


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--envs", default=None,
                 help="comma-separated gymnax ids (default: CartPole-v1,"
                 "Acrobot-v1; --quick: CartPole-v1)")
  p.add_argument("--seeds", type=int, default=4)
  p.add_argument("--columns", default=None,
                 help="comma-separated subset of the columns (default: all)")
  p.add_argument("--quick", action="store_true",
                 help="smoke run: 2 seeds, a tiny budget (numbers mean nothing)")
  p.add_argument("--out", default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results"))
  p.add_argument("--no-plot", action="store_true")
  args = p.parse_args(argv)

  # --quick: CartPole only unless asked (an Acrobot episode outlasts its
  # budget), two seeds, 512 steps; it checks the plumbing, not the numbers.
  provenance = _provenance()  # read before the runs: the tree may change
  envs = [e for e in (args.envs or (
      "CartPole-v1" if args.quick else ",".join(rl_tasks.ENVS))).split(",")
          if e]
  n_seeds = 2 if args.quick else args.seeds
  seeds = list(range(n_seeds))
  results, random, scores = {}, {}, {}
  for env in envs:
    if args.quick:
      cfg = rl_tasks.default_config(env, total_timesteps=4 * 4 * 32,
                                    num_steps=32, update_epochs=1,
                                    num_minibatches=2, hidden=16)
    else:
      cfg = rl_tasks.default_config(env)
    cols = columns(cfg)
    if args.columns:
      unknown = set(args.columns.split(",")) - set(cols)
      if unknown:
        raise SystemExit(f"--columns: unknown {sorted(unknown)}; "
                         f"known: {sorted(cols)}")
      cols = {k: v for k, v in cols.items() if k in args.columns.split(",")}
    random[env] = random_policy(env, seeds, cfg)
    results[env], scores[env] = {}, {}
    for name, col in cols.items():
      r = run_rl(env, col.make_tx, seeds, reward=col.reward,
                 lr_of=col.lr_of, config=cfg)
      per_start = {s: r["score"][i] for i, s in enumerate(STARTS)}
      r["score"] = per_start
      r["final_lr"] = {s: r["final_lr"][i] for i, s in enumerate(STARTS)}
      results[env][name], scores[env][name] = r, per_start
      print(f"{env:12s} {name:14s} " + "  ".join(
          f"{s}: {_cell(per_start[s])}" for s in STARTS)
            + f"  [{r['wall_s']:.0f} s]", flush=True)

  cfg0 = rl_tasks.default_config(envs[0])
  header = [
      "# RL benchmark: PPO on gymnax (issue 10)", "",
      f"`python benchmarks/rl.py{' --quick' if args.quick else ''} "
      f"--envs {','.join(envs)} --seeds {n_seeds}`; device: "
      f"{jax.devices()[0].device_kind}; {provenance}.", "",
      "PPO (clipped surrogate, GAE) written from Schulman et al. 2017: "
      f"{cfg0.num_envs} envs x {cfg0.num_steps} steps per rollout, "
      f"{cfg0.update_epochs} epochs x {cfg0.num_minibatches} minibatches, "
      "MLP 64-64 tanh actor and critic, gamma 0.99, lambda 0.95, clip 0.2, "
      "vf 0.5, ent 0.01, `clip_by_global_norm(0.5)`; timesteps: " + ", ".join(
          f"{e} {rl_tasks.DEFAULT_TIMESTEPS[e]:.0e}" for e in envs)
      + (" (--quick: 512)" if args.quick else "") + ".",
      "Return: mean over the episodes completed in the last 10% of training, "
      "mean ± sd over seeds. LR end: applied LR at the end / 2.5e-4, "
      "geometric mean over seeds.", "",
  ]
  rows = goals(scores, random)
  md = "\n".join(header + [
      table(results, random), "",
      "Columns: " + "; ".join(f"`{k}` {v.doc}" for k, v in
                              columns(cfg0).items()) + ".", "",
      "## Goals (issue 10, section B, \"RL works\")", "",
      "Within x% of adam: return >= adam - x% * |adam| (seed means). "
      "Gain over random: return - untrained policy's return.", "",
      goals_table(rows), "",
      "## Wall time per column (2 starts x seeds in one program)", "",
      timing_table(results), "",
      f"{os.cpu_count()} CPU cores; load average at the end "
      f"{os.getloadavg()[0]:.1f} (other jobs share the machine).", ""])
  print(md)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "rl.md"), "w") as f:
    f.write(md)
  if not args.no_plot:
    plot(results, os.path.join(args.out, "rl.png"))
  return results, rows


if __name__ == "__main__":
  main()
