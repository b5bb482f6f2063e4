"""Benchmark 1b: what a per-step host sync costs a training loop.

The seed's scheduler reads the loss on the host every step
(``scheduler.step_loss(loss)`` calls ``loss.item()``), so the host waits for
the device to finish each step before it can queue the next. Our controller
reads the loss inside the jitted step and never syncs. Timed here, per step,
in a Python loop that dispatches one step at a time (as real loops do):

* jax, ``optax.chain(sgd, adaptive_scale(...))``, no sync (ours);
* the same step, plus ``float(loss)`` every step (what a host-side
  controller needs);
* jax, the plain optimizer (no controller);
* torch, SGD with the seed's ``AdaptiveScheduler`` (``step_loss``: a sync);
* torch, SGD alone (no sync).

Data sit on the device; batches are sliced there. On a CPU backend the sync
costs little (the "device" is the host); on a GPU it exposes every step's
launch latency.

  python benchmarks/host_sync.py                      # full run
  python benchmarks/host_sync.py --models seed_demo --steps 20 --rounds 2 --out -
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  pylint: disable=wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# name -> (layer sizes, batch): the seed's demo MLP, and a ~1M-parameter MLP.
MODELS = {
    "seed_demo": ((10, 32, 1), 64),
    "mlp_1m": ((256, 1024, 640, 10), 256),
}
N_BATCHES = 16
LR, MOMENTUM = 0.01, 0.9
# Every policy on, as in overhead.py.
POLICIES = dict(use_reward=False, use_cosine=True, T0=100, patience=20,
                cooldown=40, var_damp_scale=1.0)
JAX_VARIANTS = ("jax: adaptive_scale, no sync (ours)",
                "jax: adaptive_scale + float(loss) every step",
                "jax: plain optimizer")
TORCH_VARIANTS = ("torch: SGD + seed AdaptiveScheduler (loss.item())",
                  "torch: SGD alone")


def data(sizes, batch, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((N_BATCHES * batch, sizes[0])).astype(np.float32)
  w = rng.standard_normal((sizes[0], sizes[-1])).astype(np.float32)
  y = (x @ w / np.sqrt(sizes[0])).astype(np.float32)
  return x, y


def jax_loop(sizes, batch, variant):
  """Returns one_round(steps) -> seconds for ``steps`` dispatched steps."""
  x, y = (jax.device_put(a) for a in data(sizes, batch))
  params = toy.init_mlp(jax.random.PRNGKey(0), sizes)
  plain = variant == JAX_VARIANTS[2]
  tx = optax.sgd(LR, momentum=MOMENTUM)
  if not plain:
    tx = optax.chain(tx, ao.adaptive_scale(**POLICIES))

  def loss_fn(p, i):
    start = (i % N_BATCHES) * batch
    xb = jax.lax.dynamic_slice_in_dim(x, start, batch)
    yb = jax.lax.dynamic_slice_in_dim(y, start, batch)
    return jnp.mean((toy.mlp(p, xb) - yb) ** 2)

  def step(p, s, i):
    loss, g = jax.value_and_grad(loss_fn)(p, i)
    kw = {} if plain else {"value": loss}
    u, s = tx.update(g, s, p, **kw)
    return optax.apply_updates(p, u), s, i + 1, loss

  step = jax.jit(step, donate_argnums=(0, 1, 2))
  box = {"p": params, "s": tx.init(params), "i": jnp.zeros((), jnp.int32)}
  sync = variant == JAX_VARIANTS[1]

  def one_round(steps):
    p, s, i = box["p"], box["s"], box["i"]
    t0 = time.perf_counter()
    for _ in range(steps):
      p, s, i, loss = step(p, s, i)
      if sync:
        float(loss)
    jax.block_until_ready((p, s))
    box.update(p=p, s=s, i=i)
    return (time.perf_counter() - t0) / steps

  return one_round


def torch_loop(sizes, batch, variant):
  # pylint: disable=import-outside-toplevel
  import torch
  from tests.oracle.adaptive_scheduler_seed import AdaptiveScheduler

  dev = "cuda" if torch.cuda.is_available() else "cpu"
  x, y = (torch.from_numpy(a).to(dev) for a in data(sizes, batch))
  torch.manual_seed(0)
  layers = []
  for a, b in zip(sizes[:-1], sizes[1:]):
    layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
  model = torch.nn.Sequential(*layers[:-1]).to(dev)
  opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
  sched = None
  if variant == TORCH_VARIANTS[0]:
    sched = AdaptiveScheduler(opt, use_cosine=True, T0=100, patience=20,
                              cooldown=40, var_damp_scale=1.0)
  state = {"i": 0}

  def sync():
    if dev == "cuda":
      torch.cuda.synchronize()

  def one_round(steps):
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
      k = state["i"] % N_BATCHES
      state["i"] += 1
      xb, yb = x[k * batch:(k + 1) * batch], y[k * batch:(k + 1) * batch]
      opt.zero_grad(set_to_none=True)
      loss = torch.nn.functional.mse_loss(model(xb), yb)
      loss.backward()
      opt.step()
      if sched is not None:
        sched.step_loss(loss)
    sync()
    return (time.perf_counter() - t0) / steps

  return one_round, dev


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--models", default=",".join(MODELS))
  ap.add_argument("--steps", type=int, default=300, help="steps per round")
  ap.add_argument("--rounds", type=int, default=11)
  ap.add_argument("--no-torch", action="store_true")
  _timing.add_out_argument(ap, "host_sync.md")
  args = ap.parse_args(argv)
  load0 = _timing.load_average()
  rows, torch_dev = [], "-"
  for name in args.models.split(","):
    sizes, batch = MODELS[name]
    count = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    runs = {v: jax_loop(sizes, batch, v) for v in JAX_VARIANTS}
    if not args.no_torch:
      for v in TORCH_VARIANTS:
        runs[v], torch_dev = torch_loop(sizes, batch, v)
    for fn in runs.values():
      fn(max(3, args.steps // 10))  # compile, warm caches
    per_step = _timing.interleaved(
        {k: (lambda fn=fn: fn(args.steps)) for k, fn in runs.items()},
        args.rounds)
    ours = _timing.median(per_step[JAX_VARIANTS[0]])
    for v, xs in per_step.items():
      med = _timing.median(xs)
      rows.append([name, f"{count:,}", str(batch), v, f"{med * 1e6:,.1f}",
                   _timing.percent(_timing.spread(xs)),
                   f"{med / ours:.2f}x"])
  body = _timing.table(["model", "params", "batch", "loop", "us/step (median)",
                        "IQR/2", "vs ours"], rows)
  _timing.report(
      "Host sync: a per-step loss read vs a controller inside the step", body,
      args.out, load0,
      extra={
          "what": "a Python loop dispatching one training step (grad, "
                  "update, apply) per iteration; data on the device; median "
                  "of interleaved rounds",
          "rounds x steps": f"{args.rounds} x {args.steps}",
          "torch device": torch_dev,
          "controller policies": ", ".join(f"{k}={v}"
                                           for k, v in POLICIES.items()),
      })


if __name__ == "__main__":
  main()
