"""The seed's demo problem under both semantics, against a fixed LR.

Trains adaptive_optax.toy's MLP (SGD 0.05, momentum 0.9, batch 64) with:
a fixed LR; the seed demo's scheduler config in mode="reference" (the seed's
exact trajectory) and in mode="stable"; and the default ``adaptive_scale()``.
Writes benchmarks/results/seed_demo_modes.md and seed_demo_modes.png.

  python benchmarks/seed_demo_modes.py [--steps 2000] [--seeds 3] [--out DIR]
"""

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptive_optax as ao
from adaptive_optax import toy

SEED_DEMO = dict(up_factor=1.03, down_factor=0.8, patience=20, cooldown=40,
                 use_cosine=True, T0=100, T_mult=2, lr_min=1e-5, lr_max=1.0)


def columns():
  sgd = lambda: optax.sgd(toy.SEED_LR, momentum=toy.SEED_MOMENTUM)
  hp = lambda mode: ao.adaptive_hyperparams(
      optax.sgd, learning_rate=toy.SEED_LR, momentum=toy.SEED_MOMENTUM,
      mode=mode, **SEED_DEMO)
  return {
      "fixed LR 0.05": (sgd(), None),
      "seed demo config, reference": (hp("reference"), "learning_rate"),
      "seed demo config, stable": (hp("stable"), "learning_rate"),
      "adaptive_scale() default": (optax.chain(sgd(), ao.adaptive_scale()), "scale"),
  }


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=2000)
  ap.add_argument("--seeds", type=int, default=3)
  ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
  args = ap.parse_args()
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  checkpoints = [c for c in (toy.SEED_EPOCHS * toy.STEPS_PER_EPOCH, 400, 2000)
                 if c <= args.steps]
  seeds = jnp.arange(args.seeds)
  results = {}
  for name, (tx, rate_key) in columns().items():
    t0 = time.perf_counter()

    def run(seed, tx=tx, rate_key=rate_key):
      o = toy.train(tx, steps=args.steps, seed=seed)
      lr = (o["metrics"][rate_key] * (toy.SEED_LR if rate_key == "scale" else 1)
            if rate_key else jnp.full(args.steps, toy.SEED_LR))
      return o["loss"], lr

    losses, lrs = jax.jit(jax.vmap(run))(seeds)
    # Full-data MSE at each checkpoint: retrain to that length (same data order).
    finals = {c: np.asarray(jax.jit(jax.vmap(
        lambda s, c=c, tx=tx: toy.train(tx, steps=c, seed=s)["final_mse"]))(seeds))
        for c in checkpoints}
    results[name] = dict(losses=np.asarray(losses), lrs=np.asarray(lrs),
                         finals=finals, secs=time.perf_counter() - t0)
    print(f"{name}: " + ", ".join(
        f"{c} steps MSE {finals[c].mean():.4g}" for c in checkpoints), flush=True)

  lines = [
      f"Seed demo problem (adaptive_optax.toy), {args.seeds} seeds, full-data MSE "
      "after training (mean, and min-max over seeds); applied LR at the end.",
      "",
      "| column | " + " | ".join(f"MSE @ {c} steps" for c in checkpoints)
      + f" | LR @ {args.steps} |",
      "|---|" + "---|" * (len(checkpoints) + 1),
  ]
  for name, r in results.items():
    cells = [f"{r['finals'][c].mean():.4g} ({r['finals'][c].min():.3g}-"
             f"{r['finals'][c].max():.3g})" for c in checkpoints]
    lines.append(f"| {name} | " + " | ".join(cells)
                 + f" | {np.median(r['lrs'][:, -1]):.3g} |")
  lines += ["", f"Command: `python benchmarks/seed_demo_modes.py --steps "
            f"{args.steps} --seeds {args.seeds}`; jax {jax.__version__}, "
            f"backend {jax.default_backend()}."]
  table = "\n".join(lines)
  (out / "seed_demo_modes.md").write_text(table + "\n")
  print(table)

  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (a1, a2) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
  for name, r in results.items():
    k = 20
    smooth = np.convolve(r["losses"][0], np.ones(k) / k, mode="valid")
    a1.semilogy(np.arange(k - 1, args.steps), smooth, label=name)
    a2.semilogy(r["lrs"][0], label=name)
  a1.set_ylabel(f"batch loss ({k}-step mean), seed 0")
  a2.set_ylabel("applied learning rate")
  a2.set_xlabel("step")
  a1.legend(fontsize=8)
  a1.set_title("Seed demo: reference vs stable semantics")
  fig.tight_layout()
  fig.savefig(out / "seed_demo_modes.png", dpi=110)
  print(f"wrote {out / 'seed_demo_modes.md'} and {out / 'seed_demo_modes.png'}")


if __name__ == "__main__":
  main()
