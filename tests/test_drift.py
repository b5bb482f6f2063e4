"""The drift rule: the parameters' displacement, window after window.

Its evidence comes from the parameters the transformation is given, so these
tests train (closed loops) where ``tests/test_null_evidence.py`` feeds losses alone.
Each checks a statement of ``adaptive_optax._stable.drift`` or of
``adaptive_optax._displacement``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao
from adaptive_optax import _displacement
from adaptive_optax import _options
from adaptive_optax import _policy
from adaptive_optax import _stable
from adaptive_optax import _transform
from adaptive_optax import toy

NO_DRIFT = tuple(r for r in _stable.RULES if r != "drift")


def _noise_run(opt, dim, steps=4000, seed=0, use_reward=False, **kw):
  return np.asarray(_walk(opt, dim, steps, seed, use_reward, **kw))


def _walk(opt, dim, steps=4000, seed=0, use_reward=False, **kw):
  """Gradients that are pure noise around a flat loss: a random walk.

  The loss (and the reward, with ``use_reward``) is trendless noise too, so
  nothing justifies a move of the rate. Returns, at every step, whether a
  growth of the drift rule is on trial (``drift_trial > 0``: it fired within
  the last two windows).
  """
  tx = optax.chain(opt, ao.adaptive_scale(use_reward=use_reward, **kw))
  return _walk_tx(tx, lambda state: state[1].controller, dim, steps, seed,
                  use_reward)


def _walk_tx(tx, controller, dim, steps, seed, use_reward):
  """:func:`_walk` through any transformation ``tx`` whose controller state
  ``controller(state)`` returns."""
  key = jax.random.PRNGKey(seed)
  grads = jax.random.normal(key, (steps, dim))
  losses = 1 + 0.1 * jax.random.normal(jax.random.fold_in(key, 1), (steps,))
  rewards = 1 + 0.1 * jax.random.normal(jax.random.fold_in(key, 2), (steps,))

  def body(carry, glr):
    params, state = carry
    g, loss, reward = glr
    extra = {"reward": reward} if use_reward else {}
    updates, state = tx.update(g, state, params, value=loss, **extra)
    return (params + updates, state), controller(state).drift_trial > 0

  params = jnp.zeros(dim)
  _, fired = jax.lax.scan(body, (params, tx.init(params)),
                          (grads, losses, rewards))
  return fired


@pytest.mark.parametrize("dim", [1, 3, 256])
@pytest.mark.parametrize("opt", [optax.sgd(0.1), optax.sgd(0.1, momentum=0.9),
                                 optax.adam(0.1)],
                         ids=["sgd", "sgd_m", "adam"])
def test_a_random_walk_never_fires_the_rule(opt, dim):
  """Null evidence: no growth of the rule over 4,000 steps (200 windows).

  In one to three dimensions two noise windows point the same way half the
  time (cosine +-1 in one dimension): only the spread test (MIN_SPREAD
  effective coordinates) keeps the rule quiet there; at 256 dimensions the
  cosine itself stays far below ALIGN.
  """
  assert not _noise_run(opt, dim).any()


@pytest.mark.parametrize("opt,dim", [(optax.sgd(0.1, momentum=0.9), 3),
                                     (optax.adam(0.1), 256)],
                         ids=["sgd_m-3", "adam-256"])
def test_with_a_reward_a_random_walk_never_fires_the_rule(opt, dim):
  assert not _noise_run(opt, dim, use_reward=True).any()


def _growth_run(opt, dim=64, steps=2000, seed=0):
  """Gradients ``-p + xi`` (a loss that rewards larger weights) under a
  loss that is flat noise: the weights grow along themselves. Returns, at
  every step, whether a drift growth is on trial, and the scale."""
  tx = optax.chain(opt, ao.adaptive_scale())
  key = jax.random.PRNGKey(seed)
  noise = 0.1 * jax.random.normal(key, (steps, dim))
  losses = 1 + 0.1 * jax.random.normal(jax.random.fold_in(key, 1), (steps,))

  def body(carry, x):
    params, state = carry
    xi, loss = x
    updates, state = tx.update(xi - params, state, params, value=loss)
    return ((params + updates, state),
            (state[1].controller.drift_trial > 0, ao.metrics(state)["scale"]))

  params = jax.random.normal(jax.random.fold_in(key, 2), (dim,))
  _, (fired, scale) = jax.lax.scan(body, (params, tx.init(params)),
                                   (noise, losses))
  return np.asarray(fired), np.asarray(scale)


@pytest.mark.parametrize("opt", [optax.lion(1e-3), optax.sgd(1e-3)],
                         ids=["lion", "sgd"])
def test_weights_that_grow_along_themselves_never_fire_the_rule(opt):
  """The weights keep one direction window after window, outward along
  themselves, while the loss shows no progress: growth in scale, not travel
  (Lion, whose sign steps do not shrink as the gradient does, took the
  held-out loss to 6-7x the best constant rate's this way). Without the
  radial test the rule fired here: the scale to max_scale (1e4) under Lion,
  to 507 under SGD."""
  fired, scale = _growth_run(opt)
  assert not fired.any(), int(fired.sum())
  assert scale.max() <= 2, scale.max()


def _noise_floor_run(opt, dim, k, steps=4000, seed=0, **kw):
  """A quadratic ``k/2 |p|^2`` at its noise floor: minibatch gradients
  ``k p + xi`` and the matching minibatch loss, a closed loop in which the
  parameters revert to the minimum (k = 1) or barely (k = 0.01), and in which
  a higher rate raises the loss (a wider noise ball). Returns, at every
  step, whether a drift growth is on trial, and the scale."""
  tx = optax.chain(opt, ao.adaptive_scale(**kw))
  noise = jax.random.normal(jax.random.PRNGKey(seed), (steps, dim))

  def body(carry, xi):
    params, state = carry
    loss = 0.5 * k * jnp.sum(params ** 2) + jnp.vdot(params, xi)
    updates, state = tx.update(k * params + xi, state, params, value=loss)
    return ((params + updates, state),
            (state[1].controller.drift_trial > 0, ao.metrics(state)["scale"]))

  params = jnp.zeros(dim)
  _, (fired, scale) = jax.lax.scan(body, (params, tx.init(params)), noise)
  return np.asarray(fired), np.asarray(scale)


@pytest.mark.parametrize("k", [0.01, 1.0])
@pytest.mark.parametrize("opt", [optax.sgd(0.01, momentum=0.9),
                                 optax.adam(0.01)], ids=["sgd_m", "adam"])
def test_a_mean_reverting_walk_at_the_noise_floor_never_fires_the_rule(opt, k):
  """Null evidence in a closed loop (rule 3's *Null*: "a random walk, or a
  mean-reverting one"): no growth, and the scale within [1e-3, 10]."""
  fired, scale = _noise_floor_run(opt, 64, k)
  assert not fired.any(), int(fired.sum())
  assert 1e-3 <= scale.min() and scale.max() <= 10, (scale.min(), scale.max())


LONG_MEMORY = [optax.sgd(0.1, momentum=0.99), optax.adam(0.1, b1=0.99)]


@pytest.mark.xfail(strict=True, reason=(
    "known miss: a momentum whose memory reaches a window correlates "
    "consecutive noise windows (docs/stable_policy.md, rule 3, 'Limit')"))
@pytest.mark.parametrize("opt", LONG_MEMORY, ids=["sgd_m099", "adam_b1_099"])
def test_a_momentum_that_remembers_past_a_window_leaves_a_random_walk_alone(
    opt):
  """The same null with a memory 1/(1-0.99) = 100 steps, five windows: in 64
  dimensions consecutive noise windows then share most of their direction
  and the rule fires (18-25 growths in 4,000 steps, seeds 0-1). Strict: a fix
  makes this test pass, and the marker must then go."""
  assert not _noise_run(opt, 64).any()


@pytest.mark.parametrize("opt", LONG_MEMORY, ids=["sgd_m099", "adam_b1_099"])
def test_a_drift_window_of_half_the_memory_restores_the_null(opt):
  """The documented remedy (``drift_window``): half of a memory of 100
  steps, 120 windows, no growth; the loss's windows stay at 20."""
  assert not _noise_run(opt, 64, steps=6000, drift_window=50).any()


@pytest.mark.parametrize("k", [0.01, 1.0])
def test_a_drift_window_of_half_the_memory_holds_at_the_noise_floor(k):
  """The closed loop above under Adam ``b1=0.99``, which at the default
  window fires 2-9 growths there (the scale to 8-512): none, in bounds."""
  fired, scale = _noise_floor_run(optax.adam(0.01, b1=0.99), 64, k,
                                  drift_window=50)
  assert not fired.any(), int(fired.sum())
  assert 1e-3 <= scale.min() and scale.max() <= 10, (scale.min(), scale.max())


def _hyperparams_noise_run(dim, steps=4000, seed=0, **kw):
  """``_noise_run`` through ``adaptive_hyperparams(optax.sgd)``."""
  tx = ao.adaptive_hyperparams(optax.sgd, learning_rate=0.1, **kw)
  return np.asarray(_walk_tx(tx, lambda state: state.controller, dim, steps,
                             seed, use_reward=False))


def test_adaptive_hyperparams_takes_the_drift_window_from_the_momentum():
  """It knows the optimizer's momentum: 0.99 gives a window of 50 and the
  random walk is left alone; the same run told the default window fires."""
  assert not _hyperparams_noise_run(64, momentum=0.99).any()
  assert _hyperparams_noise_run(64, momentum=0.99, drift_window=20).any()


@pytest.mark.parametrize("factory,kw,expected", [
    (optax.sgd, {}, 0), (optax.sgd, {"momentum": 0.9}, 0),
    (optax.sgd, {"momentum": 0.99}, 50), (optax.adam, {}, 0),
    (optax.adam, {"b1": 0.995}, 100), (optax.lion, {}, 0)])
def test_the_derived_drift_window(factory, kw, expected):
  """Half the memory ``1/(1 - beta)`` of ``momentum`` or ``b1`` (given or
  the factory's default) where it exceeds ``var_window``, else 0 (the
  loss's window). Lion's ``b1`` (0.9) only interpolates; its memory,
  ``b2``, is not read (a window of 50 does not mend Lion)."""
  momentum = kw.pop("momentum", None)
  assert _transform._memory_window(factory, momentum, kw, 20) == expected
  assert _transform._memory_window(factory, momentum, kw, 200) == 0


def test_a_swept_drift_window_matches_separate_runs():
  """``drift_window`` may be traced (a vmapped sweep): the same decisions
  as one run per value."""
  def run(window):
    return _walk(optax.sgd(0.1, momentum=0.99), 64, steps=1000,
                 drift_window=window)
  swept = np.asarray(jax.vmap(run)(jnp.asarray([20, 50])))
  assert swept[0].any() and not swept[1].any()
  np.testing.assert_array_equal(swept[0], run(20))
  np.testing.assert_array_equal(swept[1], run(50))


def _toy_run(lr, rules, steps, full_batch=False, seed=0):
  data = toy.make_toy_dataset(0)
  params = toy.init_mlp(jax.random.PRNGKey(seed))
  tx = optax.chain(optax.sgd(lr, momentum=0.9), ao.adaptive_scale(rules=rules))
  idx = (jnp.broadcast_to(jnp.arange(toy.N_SAMPLES), (steps, toy.N_SAMPLES))
         if full_batch else toy.batch_indices(jax.random.PRNGKey(seed + 1),
                                              steps))

  def body(carry, ix):
    params, state = carry
    loss, g = jax.value_and_grad(toy.mse)(params, data.x[ix], data.y[ix])
    updates, state = tx.update(g, state, params, value=loss)
    return ((optax.apply_updates(params, updates), state),
            (loss, state[1].controller.stored_rate))

  _, (losses, rates) = jax.jit(lambda p: jax.lax.scan(
      body, (p, tx.init(p)), idx))(params)
  return np.asarray(losses), np.asarray(rates)


def test_parameters_travelling_one_way_grow_the_rate():
  """The seed's demo from 100x too low: the rule takes the rate up where the
  loss's own evidence (the probe) stops short."""
  _, with_rule = _toy_run(5e-4, None, 400)
  _, without = _toy_run(5e-4, NO_DRIFT, 400)
  assert with_rule[-1] >= 16, with_rule[-1]
  assert without[-1] < 16, without[-1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_smooth_descent_at_a_good_rate_is_left_alone(seed):
  """Full batch: the parameters move one way at every stable rate, so the
  cosine is high at a good rate too (a doubling from 4x the good rate
  diverged in one window here, seed 2). The loss falls beyond its band at
  every window: the rule leaves the rate to the loss's own rules."""
  losses, rates = _toy_run(0.05, None, 500, full_batch=True, seed=seed)
  base, base_rates = _toy_run(0.05, NO_DRIFT, 500, full_batch=True, seed=seed)
  assert np.all(np.isfinite(losses))
  assert losses[-20:].mean() <= 1.1 * base[-20:].mean()
  np.testing.assert_array_equal(rates, base_rates)


def _digits_full_batch(opt, controlled, steps=800):
  """Digits (MLP 64-64-10, ReLU), the first 1,200 samples as one batch, the
  rest held out: the training loss falls towards 0 (it interpolates).
  Returns the held-out cross-entropy and the applied scale at every step."""
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
  x, y = load_digits(return_X_y=True)
  x, y = jnp.asarray(x / 16.0, jnp.float32), jnp.asarray(y, jnp.int32)

  def ce(p, rows):
    logp = jax.nn.log_softmax(toy.mlp(p, x[rows]))
    return -jnp.mean(jnp.take_along_axis(logp, y[rows, None], axis=1))

  train, held = jnp.arange(1200), jnp.arange(1200, x.shape[0])
  tx = optax.chain(opt, ao.adaptive_scale()) if controlled else opt

  def step(carry, _):
    params, state = carry
    loss, grads = jax.value_and_grad(ce)(params, train)
    kw = {"value": loss} if controlled else {}
    updates, state = tx.update(grads, state, params, **kw)
    scale = ao.metrics(state)["scale"] if controlled else jnp.ones(())
    return (optax.apply_updates(params, updates), state), scale

  @jax.jit
  def run(params):
    (params, _), scale = jax.lax.scan(step, (params, tx.init(params)), None,
                                      steps)
    return ce(params, held), scale

  held_loss, scale = run(toy.init_mlp(jax.random.key(0), (64, 64, 10)))
  return float(held_loss), np.asarray(scale)


@pytest.mark.parametrize("opt", [
    optax.sgd(0.1, momentum=0.9), optax.adam(3e-3),
    pytest.param(optax.lion(3e-4), marks=pytest.mark.xfail(strict=True, reason=(
        "known miss: a sign step's fall keeps pace with the rate on a full "
        "batch, so the probe's response test passes up to 16x (held-out "
        "4.39 against 0.33; docs/stable_policy.md)")))],
    ids=["sgd_m", "adam", "lion"])
def test_full_batch_training_that_interpolates_keeps_a_good_rate(opt):
  """A full batch that the model fits: the loss falls beyond its band at
  every window and the parameters keep their direction at every stable
  rate, all the way to a training loss near 0. Neither is evidence that a
  higher rate generalizes: a probe that also grew on aligned displacements
  took the scale to max_scale (1e4) by step 140 here, and the held-out
  loss from 0.35 to 0.86-0.95 (docs/stable_policy.md). One growth beyond
  the given rate may be tried (Adam: to 2x, then back)."""
  held, scale = _digits_full_batch(opt, controlled=True)
  fixed, _ = _digits_full_batch(opt, controlled=False)
  assert scale.max() <= 4, scale.max()
  assert held <= 1.1 * fixed, (held, fixed)


def _policy_args():
  return _options.build_policy({}, _options.SCALE_BOUNDS, "test")


def _hp():
  return _policy_args()[0]


def _fields(**kw):
  """A fresh stable state with some fields set (the rule's input)."""
  state = ao.adaptive_scale().init(jnp.zeros(3)).controller.unpack()
  return state._replace(**{k: jnp.asarray(v, jnp.asarray(
      getattr(state, k)).dtype) for k, v in kw.items()})


def _evidence(known=True, worse=False):
  f = lambda x: jnp.asarray(x)  # noqa: E731
  return _stable.Evidence(decide=f(known), known=f(known), mean=f(1.0),
                          var=f(0.01), gain=f(0.0), better=f(False),
                          worse=f(worse))


def _c(x):
  return jnp.asarray(x, jnp.float32)


def test_an_aligned_window_grows_the_rate_and_restarts_the_probe_segment():
  state = _fields(warmup=1.0, probing=True, probe_windows=2, probe_base=0.5,
                  probe_prev_speed=0.3)
  state, rate, fire = _stable.drift(_hp(), state, _evidence(), _c(0.95),
                                    _c(1.0), _c)
  assert bool(fire) and float(rate) == 2.0
  assert bool(state.probing) and int(state.drift_trial) == 2
  # The probe measures its next segment from the grown rate and cannot
  # revert below it.
  assert int(state.probe_windows) == -1 and float(state.probe_base) == 0


def test_a_significant_fall_leaves_the_rate_to_the_loss():
  state = _fields(warmup=1.0)
  ev = _evidence()._replace(better=jnp.asarray(True))
  _, rate, fire = _stable.drift(_hp(), state, ev, _c(0.99), _c(1.0), _c)
  assert not bool(fire) and float(rate) == 1.0


@pytest.mark.parametrize("align", [0.85, float("nan")])
def test_no_alignment_no_growth(align):
  state = _fields(warmup=1.0)
  _, rate, fire = _stable.drift(_hp(), state, _evidence(), _c(align), _c(1.0),
                                _c)
  assert not bool(fire) and float(rate) == 1.0


def test_a_worse_window_on_trial_undoes_the_growth():
  for trial in (2, 1):
    state = _fields(warmup=1.0, drift_trial=trial, drift_grew=True)
    state, rate, fire = _stable.drift(_hp(), state, _evidence(worse=True),
                                      _c(0.99), _c(2.0), _c)
    assert float(rate) == 1.0 and not bool(fire), trial
    assert int(state.drift_trial) == 0


def test_no_growth_while_one_is_on_trial():
  state = _fields(warmup=1.0, drift_trial=2)
  state, rate, fire = _stable.drift(_hp(), state, _evidence(), _c(0.99),
                                    _c(2.0), _c)
  assert not bool(fire) and float(rate) == 2.0 and int(state.drift_trial) == 1


def test_the_first_guard_cut_after_a_growth_caps_the_rule():
  hp = _hp()
  state = _fields(warmup=1.0, drift_grew=True)
  state = _stable.mark_ceiling(hp, state, _c(8.0), _c(4.0), _c)
  assert float(state.drift_ceiling) == 4.0 and not bool(state.drift_grew)
  # A later cut of the same divergence leaves the ceiling alone.
  state = _stable.mark_ceiling(hp, state, _c(4.0), _c(2.0), _c)
  assert float(state.drift_ceiling) == 4.0
  # Up to the ceiling, not beyond.
  _, rate, fire = _stable.drift(hp, state, _evidence(), _c(0.99), _c(2.0), _c)
  assert bool(fire) and float(rate) == 4.0
  _, rate, fire = _stable.drift(hp, state, _evidence(), _c(0.99), _c(4.0), _c)
  assert not bool(fire) and float(rate) == 4.0


def test_the_cosine_waits_for_the_loss_window():
  """The displacement's clock counts updates, the loss's finite losses: a
  cosine reported between two loss decisions is used at the next one."""
  hp = _hp()
  state = _fields(warmup=1.0)
  state, rate, fire = _stable.drift(hp, state, _evidence(known=False),
                                    _c(0.99), _c(1.0), _c)
  assert not bool(fire) and float(state.drift_align) == pytest.approx(0.99)
  state, rate, fire = _stable.drift(hp, state, _evidence(), _c(float("nan")),
                                    rate, _c)
  assert bool(fire) and float(rate) == 2.0
  assert float(state.drift_align) == -2.0  # used up


def test_the_sketch_is_small_and_keeps_the_cosine():
  rng = np.random.default_rng(0)
  big = {"w": rng.normal(size=(1000, 1000)).astype(np.float32),
         "b": rng.normal(size=(7,)).astype(np.float32)}
  other = jax.tree.map(lambda a: 0.8 * a + 0.6 * rng.normal(
      size=a.shape).astype(np.float32), big)
  sa, sb = (_displacement.sample(t, jnp.float32) for t in (big, other))
  assert sa.shape[0] <= _displacement.SKETCH_SIZE + 2
  cos = float(jnp.vdot(sa, sb) / jnp.linalg.norm(sa) / jnp.linalg.norm(sb))
  assert cos == pytest.approx(0.8, abs=0.03)


def _windows(params_seq, window=4):
  """The cosines reported over a sequence of parameters (one per update)."""
  disp = _displacement.init(params_seq[0], jnp.float32)
  out = []
  for p in params_seq:
    align, disp = _displacement.step(disp, p, window)
    out.append(float(align))
  return np.asarray(out), disp


def _off_axis(directions, far, seed=7):
  """A starting point orthogonal to every direction, ``far`` times the
  longest one from the origin: a path from it along the directions does not
  run along the parameters themselves (that reads as growth in scale, not
  travel)."""
  basis = np.linalg.qr(np.unique(np.stack(directions), axis=0).T)[0]
  start = np.random.default_rng(seed).normal(size=basis.shape[0])
  start -= basis @ (basis.T @ start)
  return (start * far * max(np.linalg.norm(d) for d in directions)
          / np.linalg.norm(start)).astype(np.float32)


def test_the_cosine_compares_two_consecutive_windows():
  direction = np.random.default_rng(0).normal(size=64).astype(np.float32)
  start = _off_axis([direction], far=20)
  straight = [jnp.asarray(start + direction * t) for t in range(13)]
  align, _ = _windows(straight)
  # Windows end at the 5th, 9th and 13th parameters: the first has no
  # window before it.
  assert np.isnan(align[4]) and align[8] == pytest.approx(1.0)
  assert align[12] == pytest.approx(1.0)
  assert np.isnan(np.delete(align, [8, 12])).all()
  back_and_forth = [jnp.asarray(start + direction * (t if t <= 4 else 8 - t))
                    for t in range(9)]
  align, _ = _windows(back_and_forth)
  assert align[8] == pytest.approx(-1.0)


@pytest.mark.parametrize("path", ["scaled", "signs", "shrinking"])
def test_a_displacement_along_the_parameters_reads_as_not_aligned(path):
  """Weights that grow or shrink along themselves (a scaling, Lion's sign
  steps, weight decay) keep their direction
  window after window without travelling: the cosine reads 0, not 1.
  Lion's steps ``sign(p)`` make a cosine of about 0.8 with ``p``."""
  p0 = np.random.default_rng(1).normal(size=64).astype(np.float32)
  move = {"scaled": lambda t: p0 * (1 + 0.05 * t),
          "signs": lambda t: p0 + 0.05 * t * np.sign(p0),
          "shrinking": lambda t: p0 * 0.97 ** t}[path]
  align, _ = _windows([jnp.asarray(move(t)) for t in range(13)])
  assert np.isnan(align[4]) and align[8] == 0 and align[12] == 0, align


def test_a_displacement_on_few_coordinates_reports_no_cosine():
  one = [jnp.zeros(64).at[0].set(float(t)) for t in range(9)]
  align, _ = _windows(one)
  assert np.isnan(align).all()


def test_nonfinite_parameters_do_not_poison_the_state():
  seq = [jnp.full(64, float(t)) for t in range(5)] + [jnp.full(64, jnp.nan)]
  _, disp = _windows(seq)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(disp))


@pytest.mark.parametrize("kw", [dict(use_cosine=True), dict(mode="reference"),
                                dict(rules=NO_DRIFT)])
def test_the_displacement_is_kept_only_where_the_rule_reads_it(kw):
  """Same structure in every configuration; left alone where unused."""
  tx = ao.adaptive_scale(**kw)
  params = jnp.ones(16)
  state = tx.init(params)
  extra = {"reward": 1.0} if kw.get("use_reward") else {}
  for _ in range(3):
    _, state = tx.update(params, state, params, value=1.0, **extra)
  assert int(state.displacement.steps) == 0


@pytest.mark.parametrize("kw", [{}, dict(use_reward=True)])
def test_the_displacement_is_tracked_where_the_rule_reads_it(kw):
  tx = ao.adaptive_scale(**kw)
  params = jnp.ones(16)
  state = tx.init(params)
  extra = {"reward": 1.0} if kw.get("use_reward") else {}
  for _ in range(3):
    _, state = tx.update(params, state, params, value=1.0, **extra)
  assert int(state.displacement.steps) == 3
  # Without params the rule cannot see the displacement and leaves it.
  _, state = tx.update(params, state, None, value=1.0, **extra)
  assert int(state.displacement.steps) == 3


def test_with_a_reward_two_aligned_windows_in_a_row_grow_the_rate():
  hp = _hp()
  state = _fields(warmup=1.0)
  # The first aligned window only marks itself.
  state, rate, fire = _stable.drift(hp, state, _evidence(), _c(0.95), _c(1.0),
                                    _c, streak=True)
  assert not bool(fire) and float(rate) == 1.0
  assert float(state.drift_last) == pytest.approx(0.95)
  state, rate, fire = _stable.drift(hp, state, _evidence(), _c(0.95), rate, _c,
                                    streak=True)
  assert bool(fire) and float(rate) == 2.0
  # An unaligned window breaks the streak.
  state = _fields(warmup=1.0, drift_last=0.95)
  state, rate, fire = _stable.drift(hp, state, _evidence(), _c(0.5), _c(1.0),
                                    _c, streak=True)
  assert not bool(fire) and float(state.drift_last) == pytest.approx(0.5)


def _scripted_run(directions, use_reward, w=20, dw=None):
  """Parameters moved by hand: window k of ``w`` updates travels
  ``directions[k]``; the loss and the reward are flat (no evidence either
  way). The probe and patience are off: a flat loss would move the rate
  by those. The path starts off the origin (:func:`_off_axis`). Returns the
  decided rate at the end."""
  rules = ("spike", "runaway", "reward", "drift")
  tx = ao.adaptive_scale(use_reward=use_reward, var_window=w,
                         drift_window=dw or w, rules=rules)
  params = jnp.asarray(_off_axis(directions, far=100))
  state = tx.init(params)
  extra = {"reward": 1.0} if use_reward else {}
  step = jax.jit(lambda p, s: tx.update(p, s, p, value=1.0, **extra)[1])
  for d in directions:
    for _ in range(w):
      params = params + jnp.asarray(d) / w
      state = step(params, state)
  return float(state.controller.stored_rate)


def test_with_a_reward_the_rule_needs_a_streak_of_aligned_windows():
  """Windows that turn a right angle every other window are aligned every
  other decision: enough without a reward (one aligned window), never with
  one (two in a row); a straight path grows the rate either way."""
  rng = np.random.default_rng(0)
  v, u = rng.normal(size=(2, 64)).astype(np.float32)
  u -= v * (u @ v) / (v @ v)  # orthogonal to v
  turning = [v, v, u, u] * 5
  straight = [v] * 20
  assert _scripted_run(turning, use_reward=True) == 1.0
  assert _scripted_run(turning, use_reward=False) > 1.0
  assert _scripted_run(straight, use_reward=True) > 1.0


def test_with_a_reward_a_longer_drift_window_still_makes_a_streak():
  """Displacement windows twice the loss's: every other decision reads no
  new cosine, which must neither break the streak nor extend it."""
  straight = [np.ones(64, np.float32)] * 20
  assert _scripted_run(straight, use_reward=True, dw=40) > 1.0


def test_policy_step_without_align_ignores_the_rule():
  """Front ends that see no parameters (PyTorch, Keras, simulate) pass none."""
  hp, cfg = _policy_args()
  state = _policy.init(hp, cfg, 1.0, 0.0, jnp.float32)
  a = _policy.step(hp, cfg, state, 1.0)
  b = _policy.step(hp, cfg, state, 1.0, jnp.nan)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
