"""The vendored oracle is the seed's class, verbatim."""

import pathlib

import pytest

SEED = (pathlib.Path(__file__).resolve().parents[2] / "shared" / "seed"
        / "000_60f4000df75e1ce0.txt")
COPY = pathlib.Path(__file__).parent / "oracle" / "adaptive_scheduler_seed.py"


@pytest.mark.skipif(not SEED.exists(), reason="the seed document is not beside this checkout")
def test_vendored_class_matches_the_seed_document():
  doc = SEED.read_text(encoding="utf-8")
  start = doc.index("import math\nfrom collections import deque")
  end = doc.index("\n\n\ndef make_toy_dataset")
  code = COPY.read_text(encoding="utf-8")
  assert doc[start:end] in code
