"""The applied scale on trendless loss streams, through ``ao.simulate``.

Every stream of ``tests/test_null_evidence.py`` (the 15 it bounds, the 27
more shapes, the switching ones it keeps as a known failure, and the ones it
only lists for this script), over
several seeds, with and without the cosine overlay: the lowest and highest
scale and the scale at the end. A stream has no trend, so the scale should
stay within [1e-3, 10] of the given rate (the issue's bound); a row outside
it is flagged. ``--drop`` switches stable rules off, to see which rule moves
the scale on a stream.

  python benchmarks/null_streams.py                       # ~1 min
  python benchmarks/null_streams.py --drop spike --seeds 2 --out -
"""

from __future__ import annotations

import argparse
import os
import sys

from adaptive_optax import _stable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # the streams live in tests/
import _timing  # noqa: E402  pylint: disable=wrong-import-position
from tests import test_null_evidence as null  # noqa: E402  pylint: disable=wrong-import-position

STREAMS = (null.NULL_STREAMS + null.MORE_NULL_STREAMS + null.SWITCHING_STREAMS
           + null.UNTESTED_STREAMS)


def scales(names, seeds, steps, use_cosine, rules):
  """The applied scale, shape (len(names), len(seeds), steps)."""
  # pylint: disable=protected-access
  s = null._scales(names, seeds, steps, use_cosine=use_cosine, rules=rules)
  return s.reshape(len(names), len(seeds), steps)


def table(names, s):
  # pylint: disable=protected-access
  outside = {n for n, _, _ in null._outside(names, s.reshape(len(names), -1))}
  rows = []
  for name, per_seed in zip(names, s):
    lo, hi, end = per_seed.min(), per_seed.max(), per_seed[:, -1]
    flag = "**outside**" if name in outside else ""
    rows.append([name, f"{lo:.2g}", f"{hi:.2g}",
                 f"{end.min():.2g} - {end.max():.2g}", flag])
  return _timing.table(["stream", "lowest", "highest", "at the end (by seed)",
                        "[1e-3, 10]"], rows)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--seeds", type=int, default=4)
  ap.add_argument("--steps", type=int, default=null.STEPS)
  ap.add_argument("--drop", default="",
                  help="comma-separated stable rules to switch off")
  _timing.add_out_argument(ap, "null_streams.md")
  args = ap.parse_args(argv)
  drop = {r for r in args.drop.split(",") if r}
  unknown = drop - set(_stable.RULES)
  if unknown:
    ap.error(f"--drop: unknown rules {sorted(unknown)}; the rules are "
             f"{list(_stable.RULES)}")
  rules = tuple(r for r in _stable.RULES if r not in drop)
  load0 = _timing.load_average()
  seeds = list(range(args.seeds))
  body = []
  for use_cosine in (False, True):
    s = scales(STREAMS, seeds, args.steps, use_cosine, rules)
    body.append(f"## use_cosine={use_cosine}\n\n{table(STREAMS, s)}\n")
  _timing.report(
      "The applied scale on trendless loss streams", "\n".join(body),
      args.out, load0,
      {"what": f"ao.simulate, {args.steps:,} steps, seeds {seeds}; "
               f"rules off: {sorted(drop) or 'none'}",
       "streams": "tests/test_null_evidence.py (`_stream`)"})


if __name__ == "__main__":
  main()
