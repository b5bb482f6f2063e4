"""The suite's own set-up (conftest): a compile flag XLA may not know."""

from tests import conftest


def test_the_flag_probe_tells_known_flags_from_unknown_ones():
  # An unknown flag aborts XLA: the probe must say no, so the suite runs
  # without the legacy emitters' flag once XLA drops it, rather than die.
  assert not conftest._xla_accepts("--xla_no_such_flag_for_this_test=true")
  assert conftest._xla_accepts(conftest.FAST_COMPILE_FLAGS)
