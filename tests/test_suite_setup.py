"""The suite's own set-up (conftest): a compile flag XLA may not know."""

import os

from tests import conftest


def test_the_suite_compiles_with_the_legacy_emitters_where_xla_has_them():
  # An unknown flag aborts XLA: the probe must say no, so the suite would
  # run without it rather than die.
  assert not conftest._xla_accepts("--xla_no_such_flag_for_this_test=true")
  assert conftest.FAST_COMPILE_FLAGS in os.environ["XLA_FLAGS"]
  assert conftest.LEGACY_EMITTERS in os.environ["XLA_FLAGS"]
