"""mode="stable": the seed's policies without the compounding that collapses it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao
from adaptive_optax import toy
from tests import _streams

NO_PATIENCE = dict(patience=10**9)


# Every ao.simulate run of the tests below, registered next to its test
# (name -> (losses, options)) and run by the `sims` fixture in ONE jitted
# program: the runs share most of their kernels, so compiling them together
# costs about half of compiling each on its own.
RUNS = {}


def _sim(name, losses, **kw):
  RUNS[name] = (np.asarray(losses), kw)


@pytest.fixture(scope="module")
def sims():
  """name -> ao.simulate's output for RUNS[name] (float32 losses).

  Runs with the same options and length go through one ao.simulate under
  lax.map (one stream after another, each its own run), so the program holds
  one copy of each configuration.
  """
  groups = {}  # (options, length) -> names
  for name, (losses, kw) in RUNS.items():
    groups.setdefault((tuple(sorted(kw.items())), len(losses)), []).append(name)

  def run_all(streams):
    out = {}
    for (kw, _), names in groups.items():
      each = jax.lax.map(lambda l, kw=kw: ao.simulate(l, **dict(kw)),
                         jnp.stack([streams[n] for n in names]))
      out.update({n: jax.tree.map(lambda x, i=i: x[i], each)
                  for i, n in enumerate(names)})
    return out

  streams = {name: jnp.asarray(l, jnp.float32) for name, (l, _) in RUNS.items()}
  return jax.device_get(jax.jit(run_all)(streams))


_sim("cosine_on", _streams.loss_stream("trend", 600), use_cosine=True, T0=50,
     T_mult=1)
_sim("cosine_off", _streams.loss_stream("trend", 600), use_cosine=False)


def test_cosine_overlay_is_not_written_back(sims):
  on, off = sims["cosine_on"], sims["cosine_off"]
  np.testing.assert_allclose(on["stored_scale"], off["stored_scale"], rtol=1e-6)
  # A restart returns to the adapted scale: the overlay's factor is 1 there.
  # The step after a timer reset applies the overlay at phase 0.
  first = np.roll(np.asarray(on["cosine_phase"]) == 0, 1)
  first[0] = True
  assert first.sum() >= 10
  np.testing.assert_allclose(np.asarray(on["scale"])[first],
                             np.asarray(off["scale"])[first], rtol=1e-6)
  assert np.all(np.asarray(on["scale"]) <= np.asarray(off["scale"]) * (1 + 1e-6))


_sim("reference_cosine_flat", np.ones(600), mode="reference", use_cosine=True,
     T0=50, T_mult=1, min_scale=1e-7, **NO_PATIENCE)


def test_reference_cosine_overlay_compounds(sims):
  """The seed's flaw, reproduced on purpose: each period ends lower."""
  ref = sims["reference_cosine_flat"]
  assert float(ref["scale"][-1]) < 1e-3


DAMPING_KINDS = ["noisy", "spikes"]
for _kind in DAMPING_KINDS:
  _sim(f"damped_{_kind}", _streams.loss_stream(_kind, 600), var_damp_scale=1.0)
  _sim(f"undamped_{_kind}", _streams.loss_stream(_kind, 600),
       var_damp_scale=0.0)


@pytest.mark.parametrize("kind", DAMPING_KINDS)
def test_variance_damping_is_not_written_back(sims, kind):
  damped, undamped = sims[f"damped_{kind}"], sims[f"undamped_{kind}"]
  np.testing.assert_allclose(damped["stored_scale"], undamped["stored_scale"],
                             rtol=1e-6)
  assert np.all(np.asarray(damped["scale"]) <= np.asarray(undamped["scale"]) * (1 + 1e-6))


UNITS_KINDS = ["trend", "noisy", "spikes"]
for _kind in UNITS_KINDS:
  _sim(f"units_{_kind}", _streams.loss_stream(_kind, 800))
  _sim(f"units_{_kind}_x1000", 1000.0 * _streams.loss_stream(_kind, 800))


@pytest.mark.parametrize("kind", UNITS_KINDS)
def test_stable_policy_is_independent_of_loss_units(sims, kind):
  a = sims[f"units_{kind}"]["scale"]
  b = sims[f"units_{kind}_x1000"]["scale"]
  np.testing.assert_allclose(a, b, rtol=1e-4)


_REFERENCE_UNITS = 1.0 + 0.01 * np.random.default_rng(0).standard_normal(50)
_ONLY_DAMPING = dict(mode="reference", up_factor=1.0, down_factor=1.0,
                     **NO_PATIENCE)
_sim("reference_units", _REFERENCE_UNITS, **_ONLY_DAMPING)
_sim("reference_units_x1000", 1000.0 * _REFERENCE_UNITS, **_ONLY_DAMPING)


def test_reference_variance_depends_on_units(sims):
  a = sims["reference_units"]["scale"]
  b = sims["reference_units_x1000"]["scale"]
  assert float(a[-1]) > 0.99
  assert float(b[-1]) < 1e-3


NOISE_SEEDS = range(3)
for _seed in NOISE_SEEDS:
  _noise = 1.0 + 0.3 * np.random.default_rng(_seed).standard_normal(3000)
  _sim(f"noise_{_seed}_stable", _noise, var_damp_scale=0.0, **NO_PATIENCE)
  _sim(f"noise_{_seed}_reference", _noise, mode="reference", var_damp_scale=0.0,
       **NO_PATIENCE)


@pytest.mark.parametrize("seed", NOISE_SEEDS)
def test_pure_noise_does_not_drift_the_scale_down(sims, seed):
  """No trend, no patience: stable holds; the seed's per-step rule sinks."""
  stable = sims[f"noise_{seed}_stable"]["stored_scale"]
  ref = sims[f"noise_{seed}_reference"]["scale"]
  assert float(np.min(stable)) >= 0.5
  assert float(ref[-1]) < 1e-3


def _step_up():
  """A calm loss at 1 that steps up to 3, through three ever higher spikes,
  and stays there: one event, which the run of spikes cuts for."""
  rng = np.random.default_rng(0)
  loss = 1.0 + 0.01 * rng.standard_normal(200)
  loss[100:103] = [5.0, 8.0, 12.0]
  loss[103:] = 3.0 + 0.03 * rng.standard_normal(97)
  return loss


_sim("step_up", _step_up())


def test_a_guard_cut_is_not_cut_again_by_the_window_rules(sims):
  """The run of spikes halves the rate at its third spike; the window that
  closes 20 calm losses later is worse than the one before, but the window
  rules do not cut again for it (_stable.paid): before, the probe's fall
  back by g**2 and a patience drop took the scale from 0.5 to 1/32, 16x
  where the spikes cut 2x."""
  stored = np.asarray(sims["step_up"]["stored_scale"])
  assert stored[99] == pytest.approx(0.5)
  assert stored[102] == pytest.approx(0.25)
  np.testing.assert_allclose(stored[102:], 0.25, rtol=1e-6)


SEED_DEMO_STEPS = (toy.SEED_EPOCHS * toy.STEPS_PER_EPOCH, 2000)
# The seed's demo config, under reference semantics.
SEED_DEMO_REFERENCE = dict(up_factor=1.03, down_factor=0.8, patience=20,
                           cooldown=40, use_cosine=True, T0=100, T_mult=2,
                           lr_min=1e-5, lr_max=1.0)


@pytest.fixture(scope="module")
def seed_demo():
  """The trainings of the seed-demo tests below, all in ONE jitted program.

  Each would be a program of its own (a toy.train per optimizer and length),
  and compiling them is nearly all of these tests' time; one program
  compiles once what they share. Every training is the one its test names.
  """
  fixed = optax.sgd(toy.SEED_LR, momentum=toy.SEED_MOMENTUM)
  adaptive = optax.chain(optax.sgd(toy.SEED_LR, momentum=toy.SEED_MOMENTUM),
                         ao.adaptive_scale())
  ref = ao.adaptive_hyperparams(optax.sgd, learning_rate=0.05, momentum=0.9,
                                mode="reference", **SEED_DEMO_REFERENCE)
  base = optax.sgd(0.05, momentum=0.9)

  def runs():
    by_seed = lambda tx, steps: jax.vmap(
        lambda s: toy.train(tx, steps=steps, seed=s)["final_mse"])(jnp.arange(3))
    default = {steps: (by_seed(adaptive, steps), by_seed(fixed, steps))
               for steps in SEED_DEMO_STEPS}
    out, fixed_400 = toy.train(ref, steps=400), toy.train(base, steps=400)
    reference = dict(lr=out["metrics"]["learning_rate"],
                     final_mse=out["final_mse"],
                     base_final_mse=fixed_400["final_mse"])
    return default, reference

  return jax.device_get(jax.jit(runs)())


@pytest.mark.parametrize("steps", SEED_DEMO_STEPS)
def test_seed_demo_default_is_within_1_5x_of_fixed_lr(seed_demo, steps):
  adaptive, fixed = seed_demo[0][steps]  # final MSE of seeds 0, 1, 2
  ratio = np.asarray(adaptive) / np.asarray(fixed)
  assert np.all(ratio <= 1.5), ratio


def test_seed_demo_reference_mode_stalls_as_the_seed_does(seed_demo):
  """The seed's demo config under reference semantics: LR pinned near lr_min."""
  out = seed_demo[1]
  assert float(out["lr"][-1]) < 1e-3
  assert float(out["final_mse"]) > 100 * float(out["base_final_mse"])


def test_the_probe_climbs_from_a_too_low_rate_on_most_seeds():
  """Adam 100x below a good rate on digits (MLP 64-64-10, batch 64): the
  loss leaves its plateau at log(10) slowly and noisily. Measuring each
  probe segment from its first full window at its rate (the window after a
  growth mixes the two rates, which shrank a doubling's speed-up to about
  1.5x, near the sqrt(2) bar) lets 12 of these 16 seeds climb past 10x the
  given rate; without it 8 did, 8 stopping at the given rate or 2x it."""
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
  x, y = load_digits(return_X_y=True)
  x, y = jnp.asarray(x / 16.0, jnp.float32), jnp.asarray(y, jnp.int32)
  given = 1e-4  # 100x below Adam's good rate here, 1e-2
  tx = optax.chain(optax.adam(given), ao.adaptive_scale())

  def run(seed):
    key = jax.random.key(seed)
    params = toy.init_mlp(key, (64, 64, 10))

    def step(carry, i):
      params, state = carry
      ix = jax.random.choice(jax.random.fold_in(key, i), x.shape[0], (64,))
      def loss_fn(p):
        logp = jax.nn.log_softmax(toy.mlp(p, x[ix]))
        return -jnp.mean(jnp.take_along_axis(logp, y[ix, None], axis=1))
      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, state = tx.update(grads, state, params, value=loss)
      return (optax.apply_updates(params, updates), state), ao.metrics(
          state)["scale"]

    _, scale = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(400))
    return jnp.max(scale)

  peak = np.asarray(jax.jit(jax.vmap(run))(jnp.arange(16)))
  assert np.sum(peak >= 10) >= 11, peak


def _power_law_run(given, seed, steps=3000):
  """A closed loop on the standard picture of SGD: the loss falls as a power
  law of the optimizer's time ``tau`` (the sum of the rates applied so far)
  down to a noise floor in proportion to the rate, ``(1 + tau)^-1 + 1e-3 a``,
  with 5% noise. Its best constant rate over 3,000 steps is about 0.58 (the
  minimum of ``1 / (3000 a) + 1e-3 a``). No ``params``: the drift rule, which
  reads the displacement, does not run; this is the loss's own evidence."""
  tx = ao.adaptive_scale()
  state = tx.init(jnp.zeros(()))

  def step(carry, key):
    state, tau = carry
    rate = given * ao.metrics(state)["scale"]
    tau = tau + rate
    loss = ((1 + tau) ** -1.0 + 1e-3 * rate) * (1 + 0.05 * jax.random.normal(key))
    _, state = tx.update(jnp.ones(()), state, value=loss)
    return (state, tau), rate

  keys = jax.random.split(jax.random.key(seed), steps)
  _, rate = jax.lax.scan(step, (state, jnp.zeros(())), keys)
  return rate[-1]


@pytest.mark.xfail(strict=True, reason=(
    "known miss: the probe's response test compares two rates at two times, "
    "and a loss that falls as a power law of its time slows by itself "
    "(docs/stable_policy.md, 'A loss that falls as a power law of its "
    "time')"))
def test_the_probe_climbs_on_a_loss_that_is_a_power_law_of_its_time():
  """From 100x too low (0.01, a best constant rate about 0.58): the probe's
  growths beyond the given rate must speed the log-loss's fall per window
  sqrt(2)-fold, but climbing by doublings on a power law of ``tau`` the
  fall per window stays about the same (twice the rate, half the speed per
  unit of ``tau`` as ``tau`` doubles), so no growth passes: the rate stays
  at 0.01 for 3,000 steps on both seeds, and the final loss is 28x the best
  constant rate's. Strict: a fix makes this pass, and the marker must go."""
  final = np.asarray(jax.jit(jax.vmap(lambda s: _power_law_run(0.01, s)))(
      jnp.arange(2)))
  assert np.all(final >= 0.1), final
