"""Loss and reward streams for parity and robustness tests (generated, seeded)."""

import numpy as np


def loss_stream(kind: str, n: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  t = np.arange(n)
  if kind == "trend":
    return 2.0 * np.exp(-t / 150) + 0.05 * rng.standard_normal(n) ** 2
  if kind == "plateau":
    x = 1.0 + 0.01 * rng.standard_normal(n)
    x[: n // 4] += np.linspace(1, 0, n // 4)
    return x
  if kind == "spikes":
    x = np.exp(-t / 300) + 0.02 * rng.random(n)
    x[rng.choice(n, n // 25, replace=False)] *= 20
    return x
  if kind == "large":
    return 1e6 * (3 + np.sin(t / 17)) + 1e5 * rng.standard_normal(n)
  if kind == "noisy":
    return np.abs(1.0 + rng.standard_normal(n))
  if kind == "negative":
    return -1.0 - 0.5 * np.tanh(t / 100) + 0.1 * rng.standard_normal(n)
  raise ValueError(kind)


def reward_stream(n: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed + 1000)
  t = np.arange(n)
  return np.sin(t / 40) + 0.3 * rng.standard_normal(n)


KINDS = ("trend", "plateau", "spikes", "large", "noisy", "negative")
