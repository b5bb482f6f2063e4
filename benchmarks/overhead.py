"""Benchmark 1: what the controller adds to a jitted optimizer step.

Times one jitted ``update`` + ``apply_updates`` with params and state donated
(as a real loop does), for ``opt`` alone, ``opt`` alone again (the A/A
control: the noise floor), ``optax.chain(opt, adaptive_scale(...))`` with
every policy on, ``optax.chain(opt, reduce_on_plateau())``, and a control
with the least state a loss-driven transform can have (two scalars). Rounds
are interleaved with a rotating order; the median round is quoted, and the
median of each round's ratio to (and difference from) the plain optimizer.
A last table gives the compile time against the number of leaves.

  python benchmarks/overhead.py                      # full run (~3 min)
  python benchmarks/overhead.py --sizes 1e4 --rounds 3 --steps 5 --out -
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptive_optax as ao

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  pylint: disable=wrong-import-position

# Every policy on: trend, variance, reward, patience, cosine.
ALL_POLICIES = dict(use_reward=True, use_cosine=True, T0=100, patience=20,
                    cooldown=40, var_damp_scale=1.0)
OPTIMIZERS = {
    "sgd+momentum": lambda: optax.sgd(0.05, momentum=0.9),
    "adam": lambda: optax.adam(1e-3),
}
LAYERS = 4  # several leaves: 4 square weight matrices and 4 biases


def two_scalar_state() -> optax.GradientTransformationExtraArgs:
  """A control: the least a loss-driven transform can be (two scalars).

  An EMA of the loss scales the updates and a step counter is kept beside
  it. Its cost is what any stateful controller pays for being there at all,
  whatever its arithmetic (on XLA:CPU, an output that the update does not
  read can switch the step from inline to thread-pool execution).
  """
  def init_fn(params):
    del params
    return jnp.zeros(()), jnp.zeros((), jnp.int32)

  def update_fn(updates, state, params=None, *, value, **extra_args):
    del params, extra_args
    ema = 0.9 * state[0] + 0.1 * value
    scale = 1.0 / (1.0 + ema)
    return (jax.tree.map(lambda u: u * scale, updates),
            (ema, state[1] + 1))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def make_params(n: int, seed: int = 0):
  """~n parameters as LAYERS (d, d) weights and (d,) biases."""
  d = max(2, int(round((n / LAYERS) ** 0.5)))
  keys = jax.random.split(jax.random.PRNGKey(seed), LAYERS)
  return [dict(w=jax.random.normal(k, (d, d)) / d, b=jnp.zeros((d,)))
          for k in keys]


def variants(opt_name: str):
  opt = OPTIMIZERS[opt_name]
  return {
      "plain": (opt(), {}),
      "plain (A/A)": (opt(), {}),
      "+adaptive_scale": (optax.chain(opt(), ao.adaptive_scale(**ALL_POLICIES)),
                          {"reward": True}),
      # The defaults: no reward or cosine, so the drift rule runs and the
      # step also samples and sums the updates' displacement.
      "+adaptive_scale()": (optax.chain(opt(), ao.adaptive_scale()), {}),
      "+reduce_on_plateau": (
          optax.chain(opt(), optax.contrib.reduce_on_plateau()), {}),
      "+two-scalar state (control)": (
          optax.chain(opt(), two_scalar_state()), {}),
  }


# Entry-level instructions that run as kernels (thunks on CPU, launches on
# GPU); the rest only name buffers.
_NOT_KERNELS = ("parameter", "constant", "get-tuple-element", "tuple",
                "bitcast")


def count_kernels(compiled) -> int:
  """Kernels in the optimized program's entry computation."""
  text = compiled.as_text()
  entry = text[text.index("\nENTRY"):]
  entry = entry[:entry.index("\n}")]
  ops = re.findall(r"= \S+ ([\w-]+)\(", entry)
  return sum(op not in _NOT_KERNELS for op in ops)


# Compile time against the number of leaves: the controller's scalar step
# must be compiled once, not fused into every leaf's update loop.
LEAF_VARIANTS = {
    "adam": lambda: optax.adam(1e-3),
    "adam + adaptive_scale()": lambda: optax.chain(optax.adam(1e-3),
                                                   ao.adaptive_scale()),
    "sgd+momentum": lambda: optax.sgd(0.05, momentum=0.9),
    "adaptive_hyperparams(sgd, momentum)": lambda: ao.adaptive_hyperparams(
        optax.sgd, learning_rate=0.05, momentum=0.9),
}


def compile_by_leaves(leaf_counts):
  """Rows of (leaves, variant, compile s, lines of the optimized program)."""
  rows = []
  for n in leaf_counts:
    params = {f"w{i}": jnp.ones((64, 64)) for i in range(n)}
    for name, make in LEAF_VARIANTS.items():
      tx = make()
      step = build_step(tx, False, with_value="adaptive" in name)
      state = tx.init(params)
      t0 = time.perf_counter()
      compiled = step.lower(params, state, params, jnp.float32(1.0),
                            jnp.float32(0.5)).compile()
      rows.append([str(n), name, f"{time.perf_counter() - t0:.2f}",
                   f"{compiled.as_text().count(chr(10)):,}"])
  return rows


def build_step(tx, needs_reward: bool, with_value: bool):
  def step(params, state, grads, loss, reward):
    kw = {}
    if with_value:
      kw["value"] = loss
    if needs_reward:
      kw["reward"] = reward
    updates, state = tx.update(grads, state, params, **kw)
    return optax.apply_updates(params, updates), state
  return jax.jit(step, donate_argnums=(0, 1))


def measure(n: int, opt_name: str, rounds: int, steps: int):
  params0 = make_params(n)
  count = sum(x.size for x in jax.tree.leaves(params0))
  grads = jax.tree.map(lambda p: 1e-3 * jnp.ones_like(p), params0)
  loss, reward = jnp.float32(1.0), jnp.float32(0.5)
  runs, compile_s, leaves, kernels = {}, {}, {}, {}
  for name, (tx, kw) in variants(opt_name).items():
    with_value = name != "plain" and name != "plain (A/A)"
    step = build_step(tx, kw.get("reward", False), with_value)
    params = jax.tree.map(jnp.copy, params0)
    state = tx.init(params)
    leaves[name] = len(jax.tree.leaves(state))
    t0 = time.perf_counter()
    compiled = step.lower(params, state, grads, loss, reward).compile()
    compile_s[name] = time.perf_counter() - t0
    kernels[name] = count_kernels(compiled)
    # A varying loss keeps every branch honest; values come from the host
    # once, outside the timed loop.
    losses = [jnp.float32(1.0 + 0.1 * np.sin(i)) for i in range(steps)]
    box = {"p": params, "s": state}

    def one_round(compiled=compiled, box=box, losses=losses):
      p, s = box["p"], box["s"]
      t0, c0 = time.perf_counter(), time.process_time()
      for l in losses:
        p, s = compiled(p, s, grads, l, reward)
      jax.block_until_ready((p, s))
      dt, dc = time.perf_counter() - t0, time.process_time() - c0
      box["p"], box["s"] = p, s
      return dt / len(losses), dc / len(losses)

    one_round()  # warm up: first touch of donated buffers, caches
    runs[name] = one_round
  both = _timing.interleaved(runs, rounds)
  wall = {k: [w for w, _ in v] for k, v in both.items()}
  cpu = {k: [c for _, c in v] for k, v in both.items()}
  return count, wall, cpu, compile_s, leaves, kernels


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--sizes", default="1e4,1e6,8e6",
                  help="comma-separated parameter counts")
  ap.add_argument("--optimizers", default=",".join(OPTIMIZERS))
  ap.add_argument("--rounds", type=int, default=21)
  ap.add_argument("--steps", type=int, default=0,
                  help="steps per round (0: by size, ~0.1 s per round)")
  ap.add_argument("--leaves", default="8,100",
                  help="leaf counts (64x64 each) for the compile-time table")
  _timing.add_out_argument(ap, "overhead.md")
  args = ap.parse_args(argv)
  load0 = _timing.load_average()
  sizes = [int(float(s)) for s in args.sizes.split(",")]
  rows, comp_rows = [], []
  for n in sizes:
    steps = args.steps or max(5, min(500, int(2e8 / max(n, 1) / 10)))
    for opt_name in args.optimizers.split(","):
      count, per_step, cpu, compile_s, leaves, kernels = measure(
          n, opt_name, args.rounds, steps)
      base = _timing.median(per_step["plain"])
      plain = per_step["plain"]
      # Rounds are interleaved, so a variant and the plain optimizer of the
      # same round saw the same machine: their paired ratio and difference
      # are steadier than a ratio of medians when the machine's speed drifts.
      paired = {k: ([x / p for x, p in zip(xs, plain)],
                    [x - p for x, p in zip(xs, plain)])
                for k, xs in per_step.items()}
      rop = _timing.median(paired["+reduce_on_plateau"][1])
      cpu_base = _timing.median(cpu["plain"])
      for name, xs in per_step.items():
        med = _timing.median(xs)
        ratio, extra = (_timing.median(v) for v in paired[name])
        cpu_extra = _timing.median(cpu[name]) - cpu_base
        rows.append([
            f"{count:,}", opt_name, name, str(leaves[name]),
            str(kernels[name]), f"{med * 1e6:,.1f}",
            _timing.percent(_timing.spread(xs)), f"{med / base:.3f}x",
            f"{ratio:.3f}x", f"{extra * 1e6:+.1f}",
            (f"{extra / rop:.2f}" if "adaptive_scale" in name and rop > 0
             else ""),
            f"{_timing.median(cpu[name]) * 1e6:,.1f}",
            f"{cpu_extra * 1e6:+.1f}",
        ])
        comp_rows.append([f"{count:,}", opt_name, name,
                          f"{compile_s[name] * 1e3:.0f}"])
  body = _timing.table(
      ["params", "optimizer", "variant", "state leaves", "kernels",
       "us/step (median)",
       "IQR/2", "vs plain (medians)", "vs plain (paired)",
       "extra us/step (paired)", "extra / reduce_on_plateau's",
       "CPU us/step", "extra CPU us/step"], rows)
  body += ("\n\nCompile time of the jitted step (lower + compile, one "
           "measurement):\n\n")
  body += _timing.table(["params", "optimizer", "variant", "compile ms"],
                        comp_rows)
  body += ("\n\nCompile time against the number of leaves (each 64x64; "
           "lower + compile, one measurement):\n\n")
  body += _timing.table(
      ["leaves", "variant", "compile s", "lines of the optimized program"],
      compile_by_leaves([int(n) for n in args.leaves.split(",")]))
  _timing.report(
      "Step overhead: optax.chain(opt, adaptive_scale) vs opt alone", body,
      args.out, load0,
      extra={
          "what": "one jitted update + apply_updates, params and state "
                  "donated; median of interleaved rounds (order rotated)",
          "paired": "median over rounds of (variant / plain) and "
                    "(variant - plain) within the same round",
          "kernels": "instructions of the compiled step's entry computation "
                     "that run (fusions, copies...; not parameters or "
                     "tuples)",
          "CPU us/step": "process CPU time (all threads) per step: less "
                         "sensitive to other jobs than wall time",
          "rounds x steps": f"{args.rounds} x (by size; "
                            f"{args.steps or 'auto'})",
          "adaptive_scale policies": ", ".join(
              f"{k}={v}" for k, v in ALL_POLICIES.items()),
      })


if __name__ == "__main__":
  main()
