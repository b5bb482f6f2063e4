"""Benchmark 2: the controller alone, replaying a loss stream.

``ao.simulate`` (one jitted ``lax.scan`` over the stream) against the seed's
PyTorch ``AdaptiveScheduler`` stepping the same stream from Python with
``step_loss``, as its users do. Both run the seed demo's configuration (trend,
variance, patience, cosine). Rounds alternate; the median is quoted.

  python benchmarks/controller_alone.py                 # 1,000,000 losses
  python benchmarks/controller_alone.py --steps 2000 --rounds 1 --out -
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import adaptive_optax as ao

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # the seed's class, kept in tests/
import _timing  # noqa: E402  pylint: disable=wrong-import-position

# The seed demo's scheduler arguments.
SEED_DEMO = dict(up_factor=1.03, down_factor=0.8, patience=20, cooldown=40,
                 use_cosine=True, T0=100, T_mult=2)
SEED_LR, SEED_MOMENTUM = 0.05, 0.9


def loss_stream(n: int, seed: int = 0) -> np.ndarray:
  """A decaying, noisy loss with rare spikes: every branch gets exercised."""
  rng = np.random.default_rng(seed)
  t = np.arange(n)
  x = 1 + np.exp(-t / (n / 5)) + 0.01 * rng.random(n)
  x[rng.choice(n, max(1, n // 500), replace=False)] *= 3
  return x.astype(np.float32)


def jax_runner(losses: np.ndarray, mode: str):
  sim = jax.jit(functools.partial(
      ao.simulate, learning_rate=SEED_LR, momentum=SEED_MOMENTUM, mode=mode,
      **SEED_DEMO))
  xs = jnp.asarray(losses)
  t0 = time.perf_counter()
  jax.block_until_ready(sim(xs))
  first = time.perf_counter() - t0
  run = lambda: _timing.timed(lambda: jax.block_until_ready(sim(xs)))
  return run, first, sim(xs)


def torch_runner(losses: np.ndarray):
  import torch  # pylint: disable=import-outside-toplevel
  # pylint: disable-next=import-outside-toplevel
  from tests.oracle.adaptive_scheduler_seed import AdaptiveScheduler
  stream = [float(x) for x in losses]

  def run():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=SEED_LR, momentum=SEED_MOMENTUM)
    sched = AdaptiveScheduler(opt, lr_min=1e-7, lr_max=10.0, **SEED_DEMO)
    t0 = time.perf_counter()
    for loss in stream:
      sched.step_loss(loss)
    return time.perf_counter() - t0, opt.param_groups[0]["lr"]

  return run


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=1_000_000)
  ap.add_argument("--rounds", type=int, default=3)
  _timing.add_out_argument(ap, "controller_alone.md")
  args = ap.parse_args(argv)
  load0 = _timing.load_average()
  losses = loss_stream(args.steps)

  ref_run, ref_first, ref_out = jax_runner(losses, "reference")
  stable_run, stable_first, _ = jax_runner(losses, "stable")
  torch_run = torch_runner(losses)
  torch_lr = []

  def torch_round():
    dt, lr = torch_run()
    torch_lr.append(lr)
    return dt

  times = _timing.interleaved({
      "ao.simulate, mode=reference (jit, lax.scan)": ref_run,
      "ao.simulate, mode=stable (jit, lax.scan)": stable_run,
      "seed AdaptiveScheduler.step_loss (torch, Python loop)": torch_round,
  }, args.rounds)
  first = {"ao.simulate, mode=reference (jit, lax.scan)": ref_first,
           "ao.simulate, mode=stable (jit, lax.scan)": stable_first}
  torch_us = _timing.median(times[
      "seed AdaptiveScheduler.step_loss (torch, Python loop)"]) / args.steps
  rows = []
  for name, xs in times.items():
    per = _timing.median(xs) / args.steps
    rows.append([name, f"{per * 1e6:.3f}", f"{torch_us / per:,.1f}x",
                 f"{_timing.median(xs):.3f}",
                 f"{first[name]:.2f}" if name in first else "-"])
  body = _timing.table(
      ["controller", "us/step (median)", "speed-up vs seed",
       "total s (median)", "first call s (incl. compile)"], rows)
  # Same stream, same config: the reference replay ends where the seed does.
  lr_jax = float(ref_out["learning_rate"][-1])
  body += (f"\n\nFinal LR after the stream: ao reference {lr_jax:.6g}, seed "
           f"{torch_lr[-1]:.6g} (float32 vs float64 arithmetic).\n")
  _timing.report(
      "Controller alone: ao.simulate vs the seed's PyTorch class", body,
      args.out, load0,
      extra={"stream": f"{args.steps:,} losses (decaying, noisy, 0.2% spikes)",
             "config": ", ".join(f"{k}={v}" for k, v in SEED_DEMO.items())
                       + f"; lr={SEED_LR}, momentum={SEED_MOMENTUM}",
             "rounds": str(args.rounds)})


if __name__ == "__main__":
  main()
