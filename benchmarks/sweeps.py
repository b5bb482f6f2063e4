"""Benchmark 3: sweeps of K controller configurations in one program.

The seed's demo problem (MLP 10-32-1, batches of 64, SGD momentum 0.9) trained
for 400 steps per configuration, K configurations varying ``up_factor``,
``down_factor``, ``patience`` and the learning rate:

* ``jax.vmap`` over the K configurations, one jitted program;
* the same under ``jax.vmap`` with the plain optimizer (no controller), to
  show what vmapping the controller adds;
* the K runs one after another (one jitted ``lax.scan`` each, compiled once);
* the seed's PyTorch scheduler in torch's own loop (``DataLoader``,
  ``loss.backward()``, ``scheduler.step_loss(loss)``), one run after another,
  with its best of ``torch.set_num_threads(1)`` and ``(2)``.

Rounds are interleaved; the median is quoted. PyTorch's rate is measured on
``--torch-runs`` runs (sequential runs cost K times one run), so its K rows
share one figure.

  python benchmarks/sweeps.py                               # K=1,16,64,256
  python benchmarks/sweeps.py --ks 1,4 --steps 20 --rounds 1 --torch-runs 1 \
      --torch-rounds 1 --out -
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

import adaptive_optax as ao
from adaptive_optax import toy

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # the seed's class, kept in tests/
import _timing  # noqa: E402  pylint: disable=wrong-import-position

# The seed demo's scheduler arguments that the sweep does not vary.
FIXED = dict(cooldown=40, use_cosine=True, T0=100, T_mult=2, lr_min=1e-5,
             lr_max=1.0)
MODE = "reference"  # the torch baseline runs the seed's semantics
MODES = ("reference", "stable")


def configs(k: int, seed: int = 0) -> dict[str, np.ndarray]:
  """K configurations around the seed demo's."""
  rng = np.random.default_rng(seed)
  return dict(
      up_factor=rng.uniform(1.01, 1.10, k).astype(np.float32),
      down_factor=rng.uniform(0.6, 0.95, k).astype(np.float32),
      patience=rng.integers(5, 41, k).astype(np.int32),
      # Plain SGD with momentum 0.9 diverges on this problem above ~0.085,
      # and non-finite arithmetic would distort the timings.
      lr=np.exp(rng.uniform(np.log(0.005), np.log(0.07), k)).astype(np.float32),
  )


def jax_trainers(steps: int, mode: str = MODE):
  data = toy.make_toy_dataset()

  def with_controller(up_factor, down_factor, patience, lr):
    tx = ao.adaptive_hyperparams(
        optax.sgd, learning_rate=lr, momentum=toy.SEED_MOMENTUM, mode=mode,
        up_factor=up_factor, down_factor=down_factor, patience=patience,
        **FIXED)
    out = toy.train(tx, steps=steps, data=data, with_metrics=False)
    return out["final_mse"]

  def plain(up_factor, down_factor, patience, lr):
    del up_factor, down_factor, patience
    tx = optax.sgd(lr, momentum=toy.SEED_MOMENTUM)
    return toy.train(tx, steps=steps, data=data)["final_mse"]

  return with_controller, plain


def _finite(x) -> int:
  return int(np.isfinite(np.asarray(x, dtype=np.float64)).sum())


def memory_mib(compiled) -> float:
  """XLA's buffers for one call: arguments, outputs and temporaries."""
  m = compiled.memory_analysis()
  if m is None:
    return float("nan")
  return (m.argument_size_in_bytes + m.output_size_in_bytes
          + m.temp_size_in_bytes) / 2**20


def torch_sweep(steps: int):
  """The seed's demo loop; returns run(cfgs) -> seconds for len(cfgs) runs."""
  # pylint: disable=import-outside-toplevel
  import torch
  import torch.nn.functional as F
  from torch.utils.data import DataLoader, TensorDataset
  from tests.oracle.adaptive_scheduler_seed import AdaptiveScheduler

  torch.manual_seed(0)
  x = torch.randn(toy.N_SAMPLES, toy.N_FEATURES)
  y = x @ torch.randn(toy.N_FEATURES, 1) + 0.1 * torch.randn(toy.N_SAMPLES, 1)
  ds = TensorDataset(x, y)

  def one(up_factor, down_factor, patience, lr):
    loader = DataLoader(ds, batch_size=toy.BATCH, shuffle=True)
    model = torch.nn.Sequential(torch.nn.Linear(toy.N_FEATURES, toy.HIDDEN),
                                torch.nn.ReLU(), torch.nn.Linear(toy.HIDDEN, 1))
    opt = torch.optim.SGD(model.parameters(), lr=float(lr),
                          momentum=toy.SEED_MOMENTUM)
    sched = AdaptiveScheduler(opt, up_factor=float(up_factor),
                              down_factor=float(down_factor),
                              patience=int(patience), **FIXED)
    done = 0
    while done < steps:
      for xb, yb in loader:
        opt.zero_grad()
        loss = F.mse_loss(model(xb), yb)
        loss.backward()
        opt.step()
        sched.step_loss(loss)
        done += 1
        if done == steps:
          break
    with torch.no_grad():
      return float(F.mse_loss(model(x), y))

  def run(cfgs, threads):
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    for i in range(len(cfgs["lr"])):
      one(*(cfgs[k][i] for k in ("up_factor", "down_factor", "patience",
                                 "lr")))
    return time.perf_counter() - t0

  return run


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--ks", default="1,16,64,256")
  ap.add_argument("--mode", default=MODE, choices=MODES,
                  help="the controller's mode (the torch baseline is the seed)")
  ap.add_argument("--steps", type=int, default=400)
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--torch-runs", type=int, default=4,
                  help="runs over which PyTorch's rate is measured")
  ap.add_argument("--torch-rounds", type=int, default=3)
  _timing.add_out_argument(ap, "sweeps.md")
  args = ap.parse_args(argv)
  load0 = _timing.load_average()
  ks = [int(k) for k in args.ks.split(",")]
  names = ("up_factor", "down_factor", "patience", "lr")

  # PyTorch first, before JAX's compilations grow the process.
  torch_run = torch_sweep(args.steps)
  rss0 = _timing.peak_rss_mib()  # torch imported: count the runs only
  tcfg = configs(args.torch_runs, seed=1)
  torch_run(configs(1, seed=2), 1)  # warm up
  t_times = _timing.interleaved(
      {f"threads={n}": (lambda n=n: torch_run(tcfg, n)) for n in (1, 2)},
      args.torch_rounds)
  torch_rss = _timing.peak_rss_mib() - rss0
  best = min(t_times, key=lambda n: _timing.median(t_times[n]))
  torch_rate = args.torch_runs * args.steps / _timing.median(t_times[best])

  with_controller, plain = jax_trainers(args.steps, args.mode)
  rows = []
  for k in ks:
    cfg = configs(k)
    arrays = [jnp.asarray(cfg[n]) for n in names]
    vm_ao = jax.jit(jax.vmap(with_controller)).lower(*arrays).compile()
    vm_plain = jax.jit(jax.vmap(plain)).lower(*arrays).compile()
    seq = jax.jit(with_controller).lower(*(a[0] for a in arrays)).compile()
    rows_k = [[a[i] for a in arrays] for i in range(k)]
    mse = {}

    def run_vmap(fn, key):
      def go():
        mse[key] = jax.block_until_ready(fn(*arrays))
      return lambda: _timing.timed(go)

    def run_seq():
      def go():
        mse["seq"] = jax.block_until_ready([seq(*r) for r in rows_k])
      return _timing.timed(go)

    variants = {
        "jax.vmap, adaptive_hyperparams": run_vmap(vm_ao, "ao"),
        "jax.vmap, plain sgd (no controller)": run_vmap(vm_plain, "plain"),
        "one after another, jit + lax.scan": run_seq,
    }
    for v in variants.values():
      v()  # warm up
    times = _timing.interleaved(variants, args.rounds)
    finite = {
        "jax.vmap, adaptive_hyperparams": _finite(mse["ao"]),
        "jax.vmap, plain sgd (no controller)": _finite(mse["plain"]),
        "one after another, jit + lax.scan": _finite(mse["seq"]),
    }
    mem = {"jax.vmap, adaptive_hyperparams": memory_mib(vm_ao),
           "jax.vmap, plain sgd (no controller)": memory_mib(vm_plain),
           "one after another, jit + lax.scan": memory_mib(seq)}
    plain_t = _timing.median(times["jax.vmap, plain sgd (no controller)"])
    for name, xs in times.items():
      t = _timing.median(xs)
      rate = k * args.steps / t
      rows.append([k, name, f"{t * 1e3:,.1f}", _timing.percent(_timing.spread(xs)),
                   f"{rate:,.0f}",
                   f"{rate / torch_rate:,.1f}x",
                   f"{t / plain_t:.2f}x" if "vmap" in name else "",
                   f"{mem[name]:.2f}", f"{finite[name]}/{k}"])
    rows.append([k, f"seed + torch loop ({best}; rate of "
                    f"{args.torch_runs} runs)",
                 f"{k * args.steps / torch_rate * 1e3:,.1f} (K x one run)",
                 _timing.percent(_timing.spread(t_times[best])), f"{torch_rate:,.0f}",
                 "1.0x", "",
                 f"{torch_rss:.1f} (peak RSS growth)", ""])
  body = _timing.table(
      ["K", "method", "wall ms (median)", "IQR/2", "config-steps/s",
       "vs seed+torch", "time vs vmap(plain)", "peak memory MiB",
       "finite final MSE"], rows)
  body += ("\n\nPyTorch thread settings (seconds for "
           f"{args.torch_runs} runs x {args.steps} steps, median): "
           + ", ".join(f"{n}: {_timing.median(xs):.3f}"
                       for n, xs in t_times.items())
           + f"; kept {best}.\n")
  body += ("JAX peak memory is XLA's buffer total for one call (arguments + "
           "outputs + temporaries); for one-after-another it is one run's.\n")
  _timing.report(
      f"Sweeps: the seed's demo, {args.steps} steps x K configurations", body,
      args.out, load0,
      extra={"controller": f"mode={args.mode}, " + ", ".join(
          f"{k}={v}" for k, v in FIXED.items()) + "; varied: up_factor, "
          "down_factor, patience, lr",
             "rounds": f"{args.rounds} (PyTorch: {args.torch_rounds})",
             "process peak RSS at the end":
                 f"{_timing.peak_rss_mib():.0f} MiB"})


if __name__ == "__main__":
  main()
