"""The LM benchmark (benchmarks/lm.py) at smoke size.

The full benchmark is a script (minutes); these check that one tiny training
call learns, that a zero learning rate leaves the model at its initial loss,
that the applied-LR trace is recorded, and that the report's goals are
computed from the numbers (they flip when the numbers do).
"""

import math
import os
import sys

import numpy as np
import optax
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "benchmarks"))
import lm  # pylint: disable=wrong-import-position

STEPS = 40


@pytest.fixture(scope="module")
def tiny_run():
  # Row 0: lr 0 (nothing moves); row 1: a rate that learns at this size.
  return lm.run_lm(lm.adamw, [0.0, 1.0], [0, 1], STEPS, base_lr=3e-2,
                   cfg=lm.QUICK_CONFIG, lr_of=lambda s, lr, t: lr * 2)


def test_shapes_and_trace(tiny_run):
  assert tiny_run.val.shape == (2, 2)
  assert tiny_run.train.shape == (2, 2, STEPS)
  assert np.all(np.isfinite(tiny_run.train))
  np.testing.assert_allclose(tiny_run.lr[1], 6e-2, rtol=1e-6)
  np.testing.assert_allclose(tiny_run.lrs, [0.0, 3e-2])


def test_zero_rate_keeps_the_initial_model(tiny_run):
  import jax  # pylint: disable=import-outside-toplevel
  cfg = lm.QUICK_CONFIG
  _, windows = lm._data(cfg)  # pylint: disable=protected-access
  initial_loss = jax.jit(lambda seed: lm.task.eval_loss(
      lm.task.init(jax.random.split(jax.random.PRNGKey(seed))[0], cfg),
      windows, cfg))
  for seed in (0, 1):
    initial = float(initial_loss(seed))
    assert tiny_run.val[0, seed] == pytest.approx(initial, rel=1e-4)
  assert abs(initial - math.log(256)) < 0.2  # near-uniform logits at init
  # Paired rows: same init, same first batch, so the same step-0 loss.
  np.testing.assert_allclose(tiny_run.train[0, :, 0], tiny_run.train[1, :, 0],
                             rtol=1e-5)


def test_training_lowers_the_validation_loss(tiny_run):
  assert np.all(tiny_run.val[1] < tiny_run.val[0] - 0.3), tiny_run.val


def test_corpus_split_is_fixed_and_disjoint():
  train, val = lm.task.load_corpus()
  assert len(val) == pytest.approx(0.1 * (len(train) + len(val)), abs=1)
  again_train, again_val = lm.task.load_corpus()
  assert np.array_equal(train, again_train) and np.array_equal(val, again_val)


def test_warmup_cosine_shape():
  f = lm.warmup_cosine(2.0, 100)  # warmup: 5 steps
  np.testing.assert_allclose(
      [float(f(t)) for t in (0, 5, 100)], [0.0, 2.0, 0.0], atol=1e-6)
  assert float(f(2)) == pytest.approx(0.8)
  assert 0.0 < float(f(52)) < 2.0


def _fake_result(ours_good, const_good=2.0, cosine=1.9):
  """A run_benchmark output with chosen numbers (2 seeds, 3 steps).

  Grid rows are 3.0 except the good LR (row 2, ``const_good``) and the
  cosine's best peak (row 3, ``cosine``).
  """

  def res(vals):
    vals = np.asarray(vals, float).reshape(-1, 1) * np.ones((1, 2))
    return lm.LMResult(val=vals, train=np.ones(vals.shape + (3,)),
                       lr=np.ones(vals.shape + (3,)),
                       lrs=np.ones(len(vals)), seconds=1.0)
  good = lm.GRID[2]
  rest = [3.0] * (len(lm.GRID) - 4)
  grid = res([3.0, 2.5, const_good, 2.2] + rest)
  cos = res([3.0, 2.5, 2.1, cosine] + rest)
  return {
      "seeds": [0, 1], "steps": 3, "cfg": lm.QUICK_CONFIG, "quick": True,
      "ours_kwargs": {}, "seconds": {"x": 1.0}, "good_lr": good,
      "grid": grid, "cosine": cos, "cosine_peak": lm.GRID[3],
      "constant": {1.0: (grid.val[2], grid.train[2], grid.lr[2]),
                   0.01: (np.full(2, 4.0), np.ones((2, 3)), np.ones((2, 3))),
                   10.0: (np.full(2, 2.8), np.ones((2, 3)), np.ones((2, 3)))},
      "plateau": res([2.4]),
      "ours": res([ours_good, 3.0, 2.9]),
  }


@pytest.mark.parametrize("ours_good, passes", [
    (1.95, (True, True)),   # 1.026x cosine, below the constant
    (2.0, (False, True)),   # 1.053x cosine, level with the constant
    (2.1, (False, False)),  # worse than both
])
def test_goals_follow_the_numbers(ours_good, passes):
  verdicts = tuple(p for _, p, _ in lm.goals(_fake_result(ours_good))[:2])
  assert verdicts == passes


def test_markdown_reports_every_column_and_the_goals():
  md = lm.markdown(_fake_result(1.95))
  for col in ("warmup+cosine (tuned)", "constant", "reduce_on_plateau",
              "**ours**"):
    assert col in md
  assert md.count("| **ours** |") == 3
  assert "1.9500 ± 0.0000" in md and "PASS" in md
  assert "--quick" in md


def test_bad_ours_kwargs_is_refused():
  with pytest.raises(SystemExit):
    lm.main(["--quick", "--ours-kwargs", "[1, 2]"])


def test_run_lm_checks_its_arguments():
  with pytest.raises(ValueError, match="steps"):
    lm.run_lm(optax.sgd, [1.0], [0], 0)
  with pytest.raises(ValueError, match="lr_factors"):
    lm.run_lm(optax.sgd, [], [0], 1)


def test_saved_results_give_the_same_report(tmp_path):
  res = _fake_result(1.95)
  lm.save(res, tmp_path / "lm.json")
  again = lm.load(tmp_path / "lm.json")
  assert lm.markdown(again) == lm.markdown(res)


def test_baselines_of_another_setup_are_refused(tmp_path):
  lm.save(_fake_result(1.95), tmp_path / "lm.json")
  with pytest.raises(ValueError, match="steps"):
    lm.run_benchmark([0, 1], 4, lm.QUICK_CONFIG,
                     baselines=lm.load(tmp_path / "lm.json"))
