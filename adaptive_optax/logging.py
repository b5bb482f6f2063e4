"""TensorBoard logging of the controller's metrics (needs ``tensorboardX``).

Reading a device value on the host waits for the device, so logging one step
at a time stalls a training loop at every step. Here a whole chunk is logged
at once: gather ``ao.metrics(opt_state)`` (and the loss) as outputs of a
``lax.scan`` over ``T`` steps, then hand the stacked ``(T,)`` arrays to
:meth:`TensorBoardLogger.log`, which copies them to the host in one transfer
and writes ``T`` points per tag::

  def chunk(carry, batches):            # jitted, T steps per call
    def body(carry, batch):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params, batch)
      updates, opt_state = tx.update(grads, opt_state, params, value=loss)
      params = optax.apply_updates(params, updates)
      return (params, opt_state), {**ao.metrics(opt_state), "loss": loss}
    return jax.lax.scan(body, carry, batches)

  with ao.logging.TensorBoardLogger("runs/adaptive") as tb:
    for i in range(num_chunks):
      carry, out = chunk(carry, batches[i])
      tb.log(out, step=i * T)

Tags are ``"<prefix>/<name>"``: the applied ``learning_rate`` or ``scale``,
``momentum``, ``loss``, ``loss_ema``, ``loss_variance``,
``steps_since_improve``, ``cooldown``, ``cosine_phase``... so LR and momentum
line up with the loss on the same step axis.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import numpy as np

from adaptive_optax import _metrics


def _summary_writer(logdir, **kwargs):
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ImportError(
        "adaptive_optax.logging needs tensorboardX: pip install "
        "'adaptive_optax[tensorboard]'.") from None
  return SummaryWriter(logdir=os.fspath(logdir), **kwargs)


def _as_host_chunk(metrics: Mapping[str, Any]) -> tuple[dict[str, np.ndarray],
                                                         int]:
  """One device-to-host transfer; every value as a (T,) float64 array."""
  host = jax.device_get(dict(metrics))
  arrays = {k: np.asarray(v) for k, v in host.items()}
  ndims = {k: a.ndim for k, a in arrays.items()}
  if any(n > 1 for n in ndims.values()):
    bad = next(k for k, n in ndims.items() if n > 1)
    raise ValueError(
        f"metric {bad!r} has shape {arrays[bad].shape}: expected a scalar "
        "(one step) or a (T,) array (a chunk of T steps).")
  if all(n == 0 for n in ndims.values()):
    return {k: a.reshape(1).astype(np.float64) for k, a in arrays.items()}, 1
  lengths = {a.shape[0] for a in arrays.values() if a.ndim == 1}
  if len(lengths) != 1 or any(n == 0 for n in ndims.values()):
    raise ValueError(
        "all metrics of a chunk must share one leading length T, got shapes "
        f"{ {k: a.shape for k, a in arrays.items()} }.")
  return {k: a.astype(np.float64) for k, a in arrays.items()}, lengths.pop()


def write_metrics(writer, metrics: Mapping[str, Any], step: int, *,
                  prefix: str = "adaptive_optax") -> int:
  """Writes scalars or a stacked chunk of them with ``writer.add_scalar``.

  Args:
    writer: a ``tensorboardX.SummaryWriter`` (or any object with
      ``add_scalar(tag, value, global_step)``).
    metrics: name -> scalar (one step) or ``(T,)`` array (``T`` steps), e.g.
      ``ao.metrics(state)`` stacked by ``lax.scan``, plus ``"loss"``.
    step: the global step of the chunk's first entry.
    prefix: tag prefix; ``""`` for none.

  Returns:
    The step after the chunk (``step + T``), to pass to the next call.
  """
  values, length = _as_host_chunk(metrics)
  step = int(step)
  for name in sorted(values):
    tag = f"{prefix}/{name}" if prefix else name
    series = values[name]
    for t in range(length):
      writer.add_scalar(tag, float(series[t]), global_step=step + t)
  return step + length


class TensorBoardLogger:
  """Writes the controller's metrics to a TensorBoard event file.

  Args:
    logdir: directory of the event file (created if missing).
    prefix: tag prefix (``"adaptive_optax"``).
    **writer_kwargs: passed to ``tensorboardX.SummaryWriter``.

  Example:
    >>> import tempfile, jax.numpy as jnp
    >>> import adaptive_optax as ao
    >>> chunk = ao.simulate(jnp.linspace(2.0, 1.0, 30))   # 30 steps
    >>> with ao.logging.TensorBoardLogger(tempfile.mkdtemp()) as tb:
    ...   next_step = tb.log(chunk, step=0)
    >>> next_step
    30
  """

  def __init__(self, logdir: str | os.PathLike, *,
               prefix: str = "adaptive_optax", **writer_kwargs):
    self.writer = _summary_writer(logdir, **writer_kwargs)
    self.prefix = prefix
    self.logdir = self.writer.logdir

  def log(self, metrics: Mapping[str, Any], step: int, *,
          loss: Any = None) -> int:
    """Logs one step (scalars) or a chunk (``(T,)`` arrays) from ``step``.

    Args:
      metrics: ``ao.metrics(state)``, or its stack over a ``lax.scan`` chunk.
      step: the global step of the first entry.
      loss: optional loss (scalar or ``(T,)``), logged as ``loss``.

    Returns:
      ``step + T``.
    """
    metrics = dict(metrics)
    if loss is not None:
      metrics["loss"] = loss
    return write_metrics(self.writer, metrics, step, prefix=self.prefix)

  def log_state(self, opt_state, step: int, *, loss: Any = None) -> int:
    """Logs the current metrics of an optimizer state (one step, one sync)."""
    return self.log(_metrics.metrics(opt_state), step, loss=loss)

  def flush(self) -> None:
    self.writer.flush()

  def close(self) -> None:
    self.writer.close()

  def __enter__(self) -> "TensorBoardLogger":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
