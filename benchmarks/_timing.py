"""Timing and reporting helpers shared by the benchmark scripts.

Every comparison is measured in one process with its rounds interleaved (the
order rotates each round, so slow drift on a shared machine hits every
variant alike) and the median round is quoted.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import sys
import time
from typing import Callable, Mapping, Sequence

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "results")
# Above this 1-minute load average the machine is not ours alone.
QUIET_LOAD = 0.7


def interleaved(variants: Mapping[str, Callable[[], float]], rounds: int
                ) -> dict[str, list[float]]:
  """Runs each variant once per round, rotating the order every round.

  Args:
    variants: name -> a callable that runs one timed round and returns its
      figure (seconds per step, say).
    rounds: number of rounds.

  Returns:
    name -> the list of per-round figures.
  """
  names = list(variants)
  out = {n: [] for n in names}
  for r in range(rounds):
    k = r % len(names)
    for n in names[k:] + names[:k]:
      out[n].append(variants[n]())
  return out


def timed(fn: Callable[[], object]) -> float:
  """Seconds taken by ``fn()`` (which must block until its work is done)."""
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def median(xs: Sequence[float]) -> float:
  return statistics.median(xs)


def spread(xs: Sequence[float]) -> float:
  """Half the interquartile range relative to the median (noise estimate)."""
  if len(xs) < 4:
    return float("nan")
  q = statistics.quantiles(xs, n=4)
  return (q[2] - q[0]) / 2 / statistics.median(xs)


def percent(x: float) -> str:
  """A relative spread as a percentage; '-' when there were too few rounds."""
  return "-" if x != x else f"{x * 100:.0f}%"


def load_average() -> float:
  try:
    return os.getloadavg()[0]
  except OSError:
    return float("nan")


def peak_rss_mib() -> float:
  """This process's peak resident memory so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, str]:
  import jax  # pylint: disable=import-outside-toplevel
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return {
      "cpu": cpu,
      "cores": str(os.cpu_count()),
      "backend": jax.default_backend(),
      "devices": ", ".join(f"{d} {d.device_kind}" for d in jax.devices()),
      "jax": jax.__version__,
      "python": platform.python_version(),
  }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
  """A GitHub markdown table; numbers are formatted by the caller."""
  cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
  widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
  line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in
                                       zip(row, widths)) + " |"
  sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
  return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def add_out_argument(ap: argparse.ArgumentParser, filename: str) -> None:
  """``--out``: the results file, ``results/<filename>`` by default."""
  ap.add_argument("--out", default=os.path.join(RESULTS_DIR, filename),
                  help="results file; '-' prints only")


def report(title: str, body: str, out: str | None, load_before: float,
           extra: Mapping[str, str] | None = None) -> str:
  """Prints the report and writes it to ``out`` (a path; None or '-': don't)."""
  out = None if out == "-" else out
  load_after = load_average()
  shared = max(load_before, load_after) >= QUIET_LOAD
  m = machine()
  lines = [f"# {title}" + (" (machine shared while measured)" if shared
                           else ""), ""]
  lines.append(
      f"- machine: {m['cpu']}, {m['cores']} cores; backend {m['backend']} "
      f"({m['devices']}); jax {m['jax']}; python {m['python']}")
  lines.append(f"- 1-minute load average: {load_before:.2f} before, "
               f"{load_after:.2f} after")
  now = datetime.datetime.now(datetime.timezone.utc)
  lines.append(f"- date: {now:%Y-%m-%d %H:%M} UTC")
  lines.append(f"- command: `python {' '.join(sys.argv)}`")
  for k, v in (extra or {}).items():
    lines.append(f"- {k}: {v}")
  text = "\n".join(lines) + "\n\n" + body.rstrip() + "\n"
  print(text)
  if out:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
      f.write(text)
  return text
