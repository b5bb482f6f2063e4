"""The ``adaptive-optax`` command: ``demo`` and ``simulate``.

``adaptive-optax demo`` trains the seed's demo problem (:mod:`adaptive_optax.toy`)
three ways (SGD with ``adaptive_scale``, fixed LR, ``reduce_on_plateau``), then
prints a comparison table and writes a PNG of loss and LR against steps.
``adaptive-optax simulate`` replays a loss (and reward) CSV through the
controller with no model. Errors are one line on stderr and exit status 1
(2 for a bad command line).
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import sys
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptive_optax as ao
from adaptive_optax import toy

PROG = "adaptive-optax"
DEFAULT_STEPS = 1000
CHUNK = 100  # steps per jitted call: one host sync per chunk for the bar


class UsageError(Exception):
  """A bad argument or input file; printed as one line."""


class _Parser(argparse.ArgumentParser):
  """argparse that reports a bad command line in one line."""

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------------------
# Inputs


def _policy_from(preset: str | None, config: str | None) -> dict[str, Any]:
  kwargs = ao.presets.get(preset) if preset else {}
  if config:
    kwargs.update(ao.load_config(config))
  return kwargs


def read_column(path: str | pathlib.Path, what: str) -> np.ndarray:
  """One number per row (an optional header first); ``nan`` is allowed.

  Raises:
    UsageError: naming the file and the line of the first bad row.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise UsageError(f"{path}: {what} file not found.")
  values = []
  with path.open(newline="", encoding="utf-8") as f:
    for lineno, row in enumerate(csv.reader(f), start=1):
      cells = [c.strip() for c in row if c.strip()]
      if not cells:
        continue
      if len(cells) != 1:
        raise UsageError(
            f"{path}, line {lineno}: expected one number per row, got "
            f"{','.join(row)!r}.")
      try:
        values.append(float(cells[0]))
      except ValueError:
        if values or lineno > 1:  # only the first row may be a header
          raise UsageError(f"{path}, line {lineno}: {cells[0]!r} is not a "
                           "number.") from None
  if not values:
    raise UsageError(f"{path}: no {what} in the file.")
  return np.asarray(values, np.float64)


# ---------------------------------------------------------------------------
# demo


class _NoBar:
  """Stands in for tqdm when it is not installed."""

  def __init__(self, total, desc, **_):
    self.total, self.n, self.desc = total, 0, desc

  def set_description(self, desc):
    self.desc = desc

  def update(self, n):
    self.n += n
    print(f"{self.desc}: {self.n}/{self.total}", file=sys.stderr)

  def close(self):
    pass


def _progress(total: int, enabled: bool):
  if enabled:
    try:
      from tqdm.auto import tqdm  # pylint: disable=import-outside-toplevel
      return tqdm(total=total, desc="training", unit="step", file=sys.stderr)
    except ImportError:
      pass
  bar = _NoBar(total, "training")
  if not enabled:
    bar.update = lambda n: None
  return bar


def _runs(policy: dict[str, Any], lr: float, momentum: float):
  """(name, optimizer, how to read its LR multiplier from the state)."""

  sgd = lambda: optax.sgd(lr, momentum=momentum)
  if "learning_rate" in policy:  # a config for adaptive_hyperparams
    name = "adaptive_hyperparams"
    adaptive = ao.adaptive_hyperparams(
        optax.sgd, **{"momentum": momentum, **policy})
    adaptive_lr = lambda s: ao.metrics(s)["learning_rate"]
  else:
    name = "adaptive_scale"
    adaptive = optax.chain(sgd(), ao.adaptive_scale(**policy))
    adaptive_lr = lambda s: lr * ao.metrics(s)["scale"]
  # ReduceLROnPlateau as usually run: on the epoch's mean loss.
  plateau = optax.chain(sgd(), optax.contrib.reduce_on_plateau(
      factor=0.5, patience=5, accumulation_size=toy.STEPS_PER_EPOCH))
  return [
      (name, adaptive, adaptive_lr),
      ("fixed LR", sgd(), lambda s: _const(lr)),
      ("reduce_on_plateau", plateau,
       lambda s: lr * optax.tree.get(s, "scale")),
  ]


def _const(lr):
  return jnp.asarray(lr, jnp.float32)


def toy_setup(steps: int, seed: int):
  """The seed's data, initial MLP and batch order (shared by every run)."""
  params, idx = toy.initial_state(seed, steps)
  return toy.make_toy_dataset(), params, idx


def train_chunked(tx, lr_of: Callable, setup, on_chunk: Callable[[int], None]
                  ) -> dict[str, np.ndarray]:
  """Trains the toy MLP in jitted chunks of ``CHUNK`` steps."""

  data, params, idx = setup
  steps = len(idx)
  opt_state = tx.init(params)

  step = toy.train_step(tx, data)

  @jax.jit
  def chunk(carry, ix):
    def body(carry, ix):
      carry, loss = step(carry, ix)
      return carry, (loss, lr_of(carry[1]))
    return jax.lax.scan(body, carry, ix)

  carry, losses, lrs = (params, opt_state), [], []
  for start in range(0, steps, CHUNK):
    carry, (loss, lr) = chunk(carry, idx[start:start + CHUNK])
    loss, lr = jax.device_get((loss, lr))  # one sync per chunk
    losses.append(loss)
    lrs.append(lr)
    on_chunk(len(loss))
  final = float(toy.mse(carry[0], data.x, data.y))
  return dict(loss=np.concatenate(losses), lr=np.concatenate(lrs),
              final_mse=final)


def _table(rows: list[dict[str, Any]]) -> str:
  head = ("optimizer", "final MSE (all data)", "mean batch loss, last 10%",
          "final LR", "time (s, with compile)")
  cells = [head] + [(r["name"], f"{r['final_mse']:.4f}",
                     f"{r['tail_loss']:.4f}", f"{r['final_lr']:.3g}",
                     f"{r['seconds']:.1f}") for r in rows]
  widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
  fmt = lambda c: "| " + " | ".join(x.ljust(w) for x, w in zip(c, widths)) + " |"
  rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
  return "\n".join([fmt(cells[0]), rule] + [fmt(c) for c in cells[1:]])


def _figure():
  try:
    from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise UsageError("the plot needs matplotlib: pip install "
                     "'adaptive_optax[demo]'.") from None
  return Figure(figsize=(10, 4), layout="constrained")


def _smooth(x: np.ndarray, k: int) -> np.ndarray:
  if len(x) < k:
    return x
  return np.convolve(x, np.ones(k) / k, mode="valid")


def _demo_plot(results, path: pathlib.Path, smooth: int) -> None:
  fig = _figure()
  ax_loss, ax_lr = fig.subplots(1, 2)
  for r in results:
    loss = _smooth(r["loss"], smooth)
    ax_loss.plot(np.arange(len(loss)) + len(r["loss"]) - len(loss), loss,
                 label=r["name"])
    ax_lr.plot(r["lr"], label=r["name"])
  ax_loss.set(xlabel="step", ylabel=f"batch loss ({smooth}-step mean)",
              yscale="log", title="Loss")
  ax_lr.set(xlabel="step", ylabel="learning rate applied", yscale="log",
            title="Learning rate")
  ax_loss.legend()
  fig.savefig(path, dpi=110)


def cmd_demo(args) -> int:
  if args.steps < 1:
    raise UsageError(f"--steps must be >= 1, got {args.steps}.")
  policy = _policy_from(args.preset, args.config)
  out = pathlib.Path(args.out)
  if not out.suffix:  # matplotlib would append .png and we would name the wrong file
    out = out.with_suffix(".png")
  if not out.parent.is_dir():
    raise UsageError(f"{out}: the folder {out.parent} does not exist.")
  _figure()  # fail before training when matplotlib is missing
  runs = _runs(policy, toy.SEED_LR, toy.SEED_MOMENTUM)
  setup = toy_setup(args.steps, args.seed)
  bar = _progress(args.steps * len(runs), not args.quiet)
  results = []
  try:
    for name, tx, lr_of in runs:
      bar.set_description(name)
      t0 = time.perf_counter()
      r = train_chunked(tx, lr_of, setup, bar.update)
      tail = max(1, args.steps // 10)
      results.append(dict(r, name=name, seconds=time.perf_counter() - t0,
                          tail_loss=float(np.mean(r["loss"][-tail:])),
                          final_lr=float(r["lr"][-1])))
  finally:
    bar.close()
  _demo_plot(results, out, smooth=min(toy.STEPS_PER_EPOCH, args.steps))
  print(f"The seed's demo problem (10-d regression, MLP 10-32-1, SGD "
        f"lr={toy.SEED_LR} momentum={toy.SEED_MOMENTUM}, batch {toy.BATCH}), "
        f"{args.steps} steps, seed {args.seed}:")
  print(_table(results))
  print(f"Plot: {out}")
  return 0


# ---------------------------------------------------------------------------
# simulate


def cmd_simulate(args) -> int:

  policy = _policy_from(args.preset, args.config)
  losses = read_column(args.losses, "losses")
  rewards = None
  if args.rewards:
    rewards = read_column(args.rewards, "rewards")
    if len(rewards) != len(losses):
      raise UsageError(f"{args.rewards}: {len(rewards)} rewards for "
                       f"{len(losses)} losses; give one per step.")
    policy.setdefault("use_reward", True)
  elif policy.get("use_reward"):
    raise UsageError("this config has use_reward: true; give --rewards.")
  out = jax.device_get(ao.simulate(losses, rewards, **policy))
  rate = "learning_rate" if "learning_rate" in out else "scale"
  names = [rate] + [k for k in ("momentum", "loss_ema", "loss_variance",
                                "steps_since_improve", "cooldown",
                                "cosine_phase") if k in out]
  print(f"{len(losses)} steps; {rate}: start "
        f"{float(out[rate][0]):.4g}, final {float(out[rate][-1]):.4g}, min "
        f"{float(np.min(out[rate])):.4g}, max {float(np.max(out[rate])):.4g}")
  if args.out:
    path = pathlib.Path(args.out)
    with path.open("w", newline="", encoding="utf-8") as f:
      w = csv.writer(f)
      w.writerow(["step", "loss"] + names)
      for t in range(len(losses)):
        w.writerow([t, repr(float(losses[t]))]
                   + [repr(float(out[k][t])) for k in names])
    print(f"Metrics: {path}")
  if args.plot:
    fig = _figure()
    ax_loss, ax_rate = fig.subplots(1, 2)
    ax_loss.plot(losses, label="loss", alpha=0.5)
    ax_loss.plot(out["loss_ema"], label="loss EMA")
    ax_loss.set(xlabel="step", title="Loss")
    ax_loss.legend()
    ax_rate.plot(out[rate], label=rate)
    if "momentum" in out:
      ax_rate.plot(out["momentum"], label="momentum")
    ax_rate.set(xlabel="step", yscale="log", title=rate.replace("_", " "))
    ax_rate.legend()
    fig.savefig(args.plot, dpi=110)
    print(f"Plot: {args.plot}")
  return 0


# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog=PROG, description=(
      "A loss-driven learning-rate controller for Optax: a demo and a "
      "simulator."))
  sub = parser.add_subparsers(dest="command", required=True,
                              parser_class=_Parser)
  presets_help = "a preset: default, conservative, exploratory, rl"

  demo = sub.add_parser("demo", help="train the seed's demo problem three "
                        "ways and compare (no arguments needed)")
  demo.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                    help=f"training steps per optimizer ({DEFAULT_STEPS})")
  demo.add_argument("--preset", help=presets_help)
  demo.add_argument("--config", help="a YAML/JSON config for adaptive_scale")
  demo.add_argument("--out", default="adaptive_optax_demo.png",
                    help="PNG of loss and LR against steps")
  demo.add_argument("--seed", type=int, default=0)
  demo.add_argument("--quiet", action="store_true", help="no progress bar")
  demo.set_defaults(run=cmd_demo)

  sim = sub.add_parser("simulate", help="replay a loss stream through the "
                       "controller, no model")
  sim.add_argument("--losses", required=True,
                   help="CSV, one loss per row (optional header)")
  sim.add_argument("--rewards", help="CSV, one reward per row")
  sim.add_argument("--config", help="a YAML/JSON config")
  sim.add_argument("--preset", help=presets_help)
  sim.add_argument("--plot", help="PNG of loss and LR/scale against steps")
  sim.add_argument("--out", help="CSV of the per-step metrics")
  sim.set_defaults(run=cmd_simulate)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Runs ``adaptive-optax`` (``demo`` or ``simulate``) with these arguments.

  Args:
    argv: the command line after the program name; ``None`` reads
      ``sys.argv``.

  Returns:
    The exit status: 0, or 1 after a one-line error on stderr (a malformed
    command line exits with status 2, as argparse does).
  """
  args = build_parser().parse_args(argv)
  try:
    return args.run(args)
  except (UsageError, OSError, ValueError, TypeError, ImportError) as e:
    msg = " ".join(str(e).split()) or type(e).__name__
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
