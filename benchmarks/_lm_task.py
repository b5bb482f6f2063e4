"""The language-model task: a small byte-level GPT on Python's own sources.

Pure JAX, so a whole training run is one ``lax.scan`` and the seeds and
learning-rate rows of a column are ``vmap``-ed (see ``lm.py``).

* Data: the top-level standard-library ``.py`` files (``os.path.dirname(
  os.__file__)``), sorted by name and concatenated up to ``MAX_BYTES``; bytes
  are the tokens (vocabulary 256). The last 10% is held out for validation.
  The text is fixed for a given Python installation, so two runs on the same
  machine see the same bytes.
* Model: a pre-LayerNorm decoder-only transformer (learned positions, causal
  multi-head attention, 4x GELU MLP, no biases, output head tied to the byte
  embedding), initialised as GPT-2 (normal 0.02, residual projections scaled
  by ``1/sqrt(2 * layers)``).
* Training batches: ``batch`` random windows of ``context + 1`` bytes from the
  training split per step, drawn from a key that depends on the seed only, so
  every column sees the same batches (paired comparisons).
* Score: mean next-byte cross-entropy (nats/byte) on a fixed set of
  validation windows, evenly spaced over the held-out text.

References:
  Radford et al. 2019, "Language models are unsupervised multitask learners"
  (GPT-2: pre-LN, the initialisation); Karpathy, nanoGPT (the layout).
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

MAX_BYTES = 4_000_000  # all of CPython 3.11's top-level sources (4.7 MB) but the tail
VAL_FRACTION = 0.1
VOCAB = 256


@dataclasses.dataclass(frozen=True)
class Config:
  """Model and data sizes (static: they fix the program's shapes)."""

  layers: int = 2
  d_model: int = 64
  heads: int = 4
  context: int = 64
  batch: int = 16
  eval_windows: int = 256  # fixed validation windows of context + 1 bytes


def stdlib_files() -> list[str]:
  """The sorted top-level ``.py`` files of the standard library."""
  root = os.path.dirname(os.__file__)
  files = sorted(glob.glob(os.path.join(root, "*.py")))
  if not files:
    raise FileNotFoundError(
        f"no .py files under {root!r}: the LM task needs the standard "
        "library's sources (a Python built without them cannot run it).")
  return files


def load_corpus(max_bytes: int = MAX_BYTES) -> tuple[np.ndarray, np.ndarray]:
  """(train, validation) byte arrays (uint8), validation the last 10%.

  Args:
    max_bytes: the concatenation is cut at this many bytes.

  Returns:
    Two 1-D ``np.uint8`` arrays.
  """
  chunks, total = [], 0
  for path in stdlib_files():
    with open(path, "rb") as f:
      data = f.read()
    chunks.append(data)
    total += len(data)
    if total >= max_bytes:
      break
  text = np.frombuffer(b"".join(chunks)[:max_bytes], np.uint8)
  cut = int(len(text) * (1 - VAL_FRACTION))
  return text[:cut].copy(), text[cut:].copy()


def eval_windows(val: np.ndarray, cfg: Config) -> np.ndarray:
  """``cfg.eval_windows`` evenly spaced windows of ``context + 1`` bytes."""
  span = cfg.context + 1
  starts = np.linspace(0, len(val) - span, cfg.eval_windows).astype(np.int64)
  return np.stack([val[s:s + span] for s in starts])


def _normal(key, shape, std):
  return std * jax.random.normal(key, shape, jnp.float32)


def init(key: jax.Array, cfg: Config) -> dict:
  """GPT-2 initialisation: normal(0.02), residual outputs / sqrt(2 layers)."""
  d, std = cfg.d_model, 0.02
  keys = iter(jax.random.split(key, 2 + 4 * cfg.layers))
  params = {
      "wte": _normal(next(keys), (VOCAB, d), std),
      "wpe": _normal(next(keys), (cfg.context, d), std),
      "ln_f": jnp.ones((d,)),
      "blocks": [],
  }
  resid_std = std / math.sqrt(2 * cfg.layers)
  for _ in range(cfg.layers):
    params["blocks"].append({
        "ln1": jnp.ones((d,)),
        "qkv": _normal(next(keys), (d, 3 * d), std),
        "proj": _normal(next(keys), (d, d), resid_std),
        "ln2": jnp.ones((d,)),
        "fc": _normal(next(keys), (d, 4 * d), std),
        "fc2": _normal(next(keys), (4 * d, d), resid_std),
    })
  return params


def _layer_norm(x, g):
  mu = jnp.mean(x, -1, keepdims=True)
  var = jnp.mean(jnp.square(x - mu), -1, keepdims=True)
  return (x - mu) * jax.lax.rsqrt(var + 1e-5) * g


def _attention(x, w_qkv, w_proj, heads, b):
  """Causal self-attention on ``x`` of shape ``(b * t, d)``."""
  n, d = x.shape
  t, c = n // b, d // heads
  qkv = (x @ w_qkv).reshape(b, t, 3, heads, c)
  q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
  logits = jnp.einsum("bqhc,bkhc->bhqk", q, k) / math.sqrt(c)
  causal = jnp.tril(jnp.ones((t, t), bool))
  logits = jnp.where(causal, logits, -1e30)
  att = jax.nn.softmax(logits, axis=-1)
  return jnp.einsum("bhqk,bkhc->bqhc", att, v).reshape(n, d) @ w_proj


def logits(params: dict, tokens: jax.Array, cfg: Config) -> jax.Array:
  """Next-byte logits, shape ``tokens.shape + (256,)``."""
  b, t = tokens.shape
  # Activations stay 2-D (b * t, d): XLA:CPU's weight gradients of 3-D
  # products take a slow path. One-hot products, not gathers: the gather's
  # gradient (a scatter-add) is slow there too.
  x = jax.nn.one_hot(tokens.reshape(-1), VOCAB) @ params["wte"]
  x = (x.reshape(b, t, -1) + params["wpe"][:t]).reshape(b * t, -1)
  for blk in params["blocks"]:
    x = x + _attention(_layer_norm(x, blk["ln1"]), blk["qkv"], blk["proj"],
                       cfg.heads, b)
    h = jax.nn.gelu(_layer_norm(x, blk["ln2"]) @ blk["fc"])
    x = x + h @ blk["fc2"]
  out = _layer_norm(x, params["ln_f"]) @ params["wte"].T
  return out.reshape(b, t, VOCAB)


def loss(params: dict, windows: jax.Array, cfg: Config) -> jax.Array:
  """Mean next-byte cross-entropy (nats/byte) over ``(n, context + 1)``."""
  windows = windows.astype(jnp.int32)
  out = logits(params, windows[:, :-1], cfg)
  logp = jax.nn.log_softmax(out)
  target = windows[:, 1:]
  return -jnp.mean(jnp.sum(logp * jax.nn.one_hot(target, VOCAB), -1))


def batch(train: jax.Array, key: jax.Array, cfg: Config) -> jax.Array:
  """``cfg.batch`` random training windows of ``context + 1`` bytes."""
  span = cfg.context + 1
  starts = jax.random.randint(key, (cfg.batch,), 0, train.shape[0] - span)
  return jax.vmap(lambda s: jax.lax.dynamic_slice(train, (s,), (span,)))(
      starts)


def eval_loss(params: dict, windows: jax.Array, cfg: Config,
              chunk: int = 64) -> jax.Array:
  """Validation loss over the fixed windows, ``chunk`` windows at a time."""
  n = windows.shape[0]
  if n % chunk:
    chunk = n
  parts = windows.reshape(n // chunk, chunk, -1)
  return jnp.mean(jax.lax.map(lambda w: loss(params, w, cfg), parts))


def weight_decay_mask(params: dict) -> dict:
  """Decay matrices only (not LayerNorm gains), as GPT-2 / nanoGPT."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def num_params(cfg: Config) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(
      jax.eval_shape(lambda k: init(k, cfg), jax.random.PRNGKey(0))))
