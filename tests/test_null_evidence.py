"""Safety of the stable policy: no evidence, no drift; a runaway is caught.

Controller-only tests through ``ao.simulate`` (open loop: the losses do not
depend on the rate) and two closed training loops that diverge slowly under
a rate that is too high. The false-alarm rates each rule states in
``adaptive_optax/_stable.py`` are checked here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao
from tests.conftest import jit_long
from tests.conftest import run_updates

STEPS = 10_000


def _t(n=STEPS):
  return np.arange(n, dtype=np.float64)


def _stream(name, seed=0, n=STEPS):
  """Trendless loss streams of many shapes, level 1."""
  rng = np.random.default_rng(seed)
  t = _t(n)
  kind, _, arg = name.partition(":")
  if kind == "gauss":
    return 1 + float(arg) * rng.normal(size=n)
  if kind == "student":  # heavy tails, 3 degrees of freedom
    return 1 + 0.1 * rng.standard_t(3, size=n)
  if kind == "lognormal":
    return rng.lognormal(0.0, float(arg), size=n)
  if kind == "sine":
    return 1 + 0.2 * np.sin(2 * np.pi * t / float(arg))
  if kind == "sine_noisy":
    return 1 + 0.2 * np.sin(2 * np.pi * t / float(arg)) + 0.05 * rng.normal(size=n)
  if kind == "sawtooth":  # an epoch structure: falls within the epoch, jumps back
    p = float(arg)
    return 1.2 - 0.4 * (t % p) / p + 0.02 * rng.normal(size=n)
  if kind == "outliers":  # a fraction p of the losses h above the level
    p, h = (float(x) for x in arg.split("/"))
    return 1 + 0.05 * rng.normal(size=n) + h * (rng.random(n) < p)
  if kind == "pareto":  # a power-law tail of index a (a <= 2: no variance)
    return 1 + rng.pareto(float(arg), size=n)
  if kind == "cauchy":
    return np.abs(1 + 0.05 * rng.standard_cauchy(n))
  if kind == "logou":  # correlated: an AR(1) of coefficient 0.99 in the log
    x, e = np.zeros(n), 0.05 * rng.normal(size=n)
    for i in range(1, n):
      x[i] = 0.99 * x[i - 1] + e[i]
    return np.exp(x)
  if kind == "quantized":
    return np.round(1 + 0.3 * rng.normal(size=n), 1)
  if kind == "constant":
    return np.ones(n)
  if kind == "nan_every":
    x = 1 + 0.1 * rng.normal(size=n)
    x[::int(arg)] = np.nan
    return x
  if kind == "bursts":  # GARCH(1,1)-like clusters of noise
    v, x, e = np.ones(n), np.ones(n), rng.normal(size=n)
    for i in range(1, n):
      v[i] = 0.01 + 0.1 * (x[i - 1] - 1) ** 2 + 0.88 * v[i - 1]
      x[i] = 1 + 0.1 * np.sqrt(v[i]) * e[i]
    return x
  if kind == "square":
    return (np.where((t // (float(arg) / 2)) % 2, 1.5, 1.0)
            + 0.02 * rng.normal(size=n))
  if kind == "chirp":
    return 1 + 0.2 * np.sin(2 * np.pi * 40 * (t / 2000) ** 2)
  if kind == "expsaw":  # an exponential fall within each period
    p = float(arg)
    return 0.1 + np.exp(-(t % p) / (p / 5)) + 0.01 * rng.normal(size=n)
  if kind == "spike_every":
    x = 1 + 0.05 * rng.normal(size=n)
    x[::int(arg)] *= 10
    return x
  if kind == "scaled":
    return float(arg) * (1 + 0.3 * rng.normal(size=n))
  if kind == "bernoulli":
    return (rng.random(n) < float(arg)).astype(np.float64)
  if kind == "switch":  # two levels, 1 and 3, left with probability p a step
    level = np.cumsum(rng.random(n) < float(arg)) % 2
    return np.where(level == 1, 3.0, 1.0) * (1 + 0.05 * rng.normal(size=n))
  if kind == "blocks":  # a level per block (a rollout's minibatches, say)
    size = int(arg)
    level = np.repeat(rng.lognormal(0.0, 1.0, n // size + 1), size)[:n]
    return level * (1 + 0.1 * rng.normal(size=n))
  if kind == "stale":  # each loss reported k times (a log read every k steps)
    k = int(arg)
    return np.repeat(1 + 0.3 * rng.normal(size=n // k + 1), k)[:n]
  if kind == "walk":  # a random walk of the log-loss, s per step
    return np.exp(np.cumsum(float(arg) * rng.normal(size=n)))
  if kind == "giant":  # one loss of 1e12 at step k, else level 1
    return np.where(t == int(arg), 1e12, 1 + 0.1 * rng.normal(size=n))
  if kind == "inf_every":  # +inf every k steps (an overflowing batch)
    return np.where(t % int(arg) == 7, np.inf, 1 + 0.1 * rng.normal(size=n))
  if kind == "negative":  # a loss below 0 everywhere (a log-likelihood)
    return -float(arg) * (1 + 0.03 * rng.normal(size=n))
  if kind == "alternate":  # 2 every p-th step, else 1, no noise
    return np.where(t % int(arg) == 0, 2.0, 1.0)
  if kind == "signflip":  # level +1 and -1 by blocks of b steps
    return np.where((t // int(arg)) % 2, 1.0, -1.0) * (1 + 0.1 * rng.normal(size=n))
  if kind == "bf16":  # 1% noise rounded to bfloat16 (steps of 2^-7 near 1)
    x = jnp.asarray(1 + 0.01 * rng.normal(size=n), jnp.bfloat16)
    return np.asarray(x.astype(jnp.float32), np.float64)
  raise ValueError(name)


NULL_STREAMS = ("gauss:0.05", "gauss:0.3", "student", "lognormal:0.3",
                "lognormal:1.0", "sine:5", "sine:12", "sine:44", "sine:300",
                "sine:2000", "sine:5000", "sine_noisy:300", "sawtooth:12",
                "sawtooth:100", "sawtooth:1000")


def _scales(streams, seeds=(0,), n=STEPS, **kw):
  """The applied scale at every step of each stream and seed, stream-major:
  shape (len(streams) * len(seeds), n). ``kw`` goes to ``ao.simulate``."""
  losses = jnp.asarray(np.stack([_stream(s, seed, n) for s in streams
                                 for seed in seeds]), jnp.float32)
  run = jit_long(jax.vmap(lambda l: ao.simulate(l, **kw)["scale"]))
  return np.asarray(run(losses))


def _outside(names, scales):
  """The rows whose scale left [1e-3, 10] (or went NaN): (name, lo, hi)."""
  lo, hi = scales.min(axis=1), scales.max(axis=1)
  return [(s, float(a), float(b)) for s, a, b in zip(names, lo, hi)
          if not (a >= 1e-3 and b <= 10)]


@pytest.mark.parametrize("use_cosine", [False, True])
def test_trendless_streams_keep_the_scale_within_bounds(use_cosine):
  # On seed 0; heavy-tailed noise with use_cosine over more seeds: see
  # test_heavy_tailed_noise_with_the_cosine_overlay_on_more_seeds.
  bad = _outside(NULL_STREAMS, _scales(NULL_STREAMS, use_cosine=use_cosine))
  assert not bad, bad


# More trendless shapes (outliers, correlation, quantization, NaNs, bursts,
# square waves, extreme scales, mostly-zero losses, a tail without a
# variance): checked without the cosine overlay, under which logou and
# outliers:0.05/10 dip below 1e-3 (docs/stable_policy.md).
MORE_NULL_STREAMS = (
    "outliers:0.01/50", "outliers:0.05/10", "cauchy", "logou", "quantized",
    "constant", "nan_every:10", "bursts", "square:100", "square:1000", "chirp",
    "expsaw:500", "spike_every:50", "scaled:1e-8", "scaled:1e8",
    "bernoulli:0.5", "bernoulli:0.05", "pareto:1.5", "scaled:1e30",
    "scaled:1e-30", "giant:5000", "inf_every:100", "negative:100",
    "alternate:2", "alternate:3", "signflip:200", "bf16")


def test_more_trendless_shapes_keep_the_scale_within_bounds():
  bad = _outside(MORE_NULL_STREAMS, _scales(MORE_NULL_STREAMS))
  assert not bad, bad


# Trendless too, and known to fail: a loss that switches between levels.
SWITCHING_STREAMS = ("switch:0.01", "switch:0.1", "blocks:16")


@pytest.mark.xfail(strict=True, reason=(
    "known miss: spike runs read a loss that switches between levels as a "
    "divergence (docs/stable_policy.md, 'A loss that switches levels')"))
def test_a_loss_that_switches_levels_keeps_the_scale_within_bounds():
  """Each jump up to a higher level is a run of spikes until the EMA
  catches up, and three records among them cut the rate: all three go below
  1e-3 (two to 1e-6). Strict: a fix makes this test pass, and the marker
  must then go."""
  bad = _outside(SWITCHING_STREAMS, _scales(SWITCHING_STREAMS))
  assert not bad, bad


# Tracked by benchmarks/null_streams.py, bounded by no test (docs/stable_policy.md,
# "Correlated losses"): a loss reported again unchanged for 8 steps, whose
# within-window noise reads 8x too small (in bounds without use_cosine, below
# 1e-3 with it), and a random walk of the log-loss, which rises 20x within a
# run and which the runaway rule cuts by design.
UNTESTED_STREAMS = ("stale:8", "walk:0.03")


# Heavy-tailed noise, whose spikes stop the warm-up low at the start-up.
HEAVY_TAILED = ("lognormal:1.0", "cauchy", "outliers:0.01/50")


def test_heavy_tailed_noise_with_the_cosine_overlay_on_more_seeds():
  """With use_cosine, seeds 0-7. Before the overlay was held at 1 while the
  probe runs (_stable.cosine_overlay), its first trough met the start-up's
  low decided rate: lognormal sigma 1 reached 3.3e-4 (3 of these 8 seeds
  below 1e-3), Cauchy 7.2e-4, 1% outliers at +50 5.7e-4. Now the lowest is
  1.08e-3. (5% outliers at +10 reach 1.0e-3 on seed 4 at the second step,
  with or without the overlay: the warm-up's stop and its step's damping by
  the same spike; not tested here, at the bound by construction.)"""
  seeds = range(8)
  names = [f"{n} seed {s}" for n in HEAVY_TAILED for s in seeds]
  bad = _outside(names, _scales(HEAVY_TAILED, seeds=seeds, use_cosine=True))
  assert not bad, bad


def test_the_cosine_overlay_is_held_at_one_while_the_probe_runs():
  """The probe compares the loss's fall at two rates: the overlay must not
  move the applied rate under it. After the probe, the overlay applies."""
  # pylint: disable=g-import-not-at-top
  from adaptive_optax import _options, _policy
  losses = jnp.asarray(_stream("lognormal:1.0", 5, 2000), jnp.float32)

  def run(use_cosine):
    hp, cfg = _options.build_policy(
        dict(use_cosine=use_cosine, T0=50, T_mult=1), _options.SCALE_BOUNDS,
        "test")

    def step(state, loss):
      state = _policy.step(hp, cfg, state, loss)
      return state, state

    init = _policy.init(hp, cfg, 1.0, 0.0, jnp.float32)
    _, states = jit_long(lambda l: jax.lax.scan(step, init, l))(losses)
    f = states.unpack()
    return (np.asarray(f.applied_rate), np.asarray(f.probing),
            np.asarray(f.cosine_t))

  on, probing, phase = run(True)
  off, _, _ = run(False)
  # The probe ran through troughs of the overlay (phase 25 of 50: 0.1).
  assert np.any(probing & (phase >= 15) & (phase <= 35)), probing.sum()
  np.testing.assert_allclose(on[probing], off[probing], rtol=1e-6)
  after = ~probing
  assert after.sum() > 500, after.sum()
  assert np.all(on[after] <= off[after] * (1 + 1e-6))
  assert np.mean(on[after] < 0.5 * off[after]) > 0.2


@pytest.mark.parametrize("use_cosine", [False, True])
def test_trendless_streams_around_zero_keep_the_scale_within_bounds(
    use_cosine):
  """A loss that swings around 0 has no level to take ratios to: the spike
  guard and the damping wait until it has kept one sign for a window
  (_stable.level). Without that, 9 of these 15 streams at level 0 went to
  min_scale (spike runs at a sine's upward crossings). Levels 0 and 0.1."""
  names = [(s, level) for level in (0.0, 0.1) for s in NULL_STREAMS]
  losses = jnp.asarray(np.stack([_stream(s) - 1 + level
                                 for s, level in names]), jnp.float32)
  scales = np.asarray(jit_long(jax.vmap(
      lambda l: ao.simulate(l, use_cosine=use_cosine)["scale"]))(losses))
  lo, hi = scales.min(axis=1), scales.max(axis=1)
  final = scales[:, -2000:].mean(axis=1)
  bad = [(n, float(a), float(b), float(f))
         for n, a, b, f in zip(names, lo, hi, final)
         if not (a >= 1e-3 and b <= 10
                 and (use_cosine or 0.04 <= f <= 2.0))]
  assert not bad, bad


def _sign_ages(losses):
  _, states = run_updates(ao.adaptive_scale(),
                          jnp.asarray(losses, jnp.float32))
  return np.asarray(states.controller.sign_age)


def test_a_loss_that_never_goes_below_zero_keeps_its_level():
  """Exact zeros included (a cross-entropy that underflows): the level rule
  changes nothing for a loss bounded below by 0."""
  rng = np.random.default_rng(0)
  losses = np.abs(rng.normal(size=500)) * (rng.random(500) > 0.3)
  losses[0] = 0.7
  assert (losses == 0).sum() > 100
  assert np.all(_sign_ages(losses) >= 2**30 - 1)


def test_a_crossing_or_a_start_at_zero_takes_the_level_for_a_window():
  w = 20  # var_window
  # Below 0 from step 30: no level until the EMA has crossed too (at step
  # 37 here) and a window has kept the sign.
  crossing = np.r_[np.full(30, 0.5), -0.5, np.full(69, -0.4)]
  has_level = _sign_ages(crossing) >= w
  assert has_level[:30].all() and not has_level[30:36 + w].any()
  assert has_level[-20:].all()
  # From 0 (its EMA is 0 at the second step too) to one sign: a window on.
  ages = _sign_ages(np.r_[0.0, np.full(40, 0.3)])
  assert not (ages[:w + 1] >= w).any() and (ages[w + 1:] >= w).all()


@pytest.mark.parametrize("level", [-1.0, 10.0])
def test_trendless_streams_at_other_levels_keep_the_scale_within_bounds(level):
  """The same streams shifted: a negative loss (a log-likelihood, say) or a
  large one is no different while its level stands clear of its swing."""
  losses = jnp.asarray(np.stack([_stream(s) - 1 + level
                                 for s in NULL_STREAMS]), jnp.float32)
  scales = np.asarray(jit_long(jax.vmap(
      lambda l: ao.simulate(l)["scale"]))(losses))
  lo, hi = scales.min(axis=1), scales.max(axis=1)
  final = scales[:, -2000:].mean(axis=1)
  bad = [(s, float(a), float(b), float(f))
         for s, a, b, f in zip(NULL_STREAMS, lo, hi, final)
         if not (a >= 1e-3 and b <= 10 and 0.04 <= f <= 2.0)]
  assert not bad, bad


def test_no_start_scale_drifts_a_trendless_loss():
  # The warm-up's factor grows to 1 on calm steps; at start_scale >= 1 /
  # probe_growth there is none. It once shrank there instead (by the same
  # per-step factor, below 1), to ~5e-4 within 400 steps of pure noise.
  streams = ("gauss:0.05", "sine:300", "sawtooth:12")
  starts = jnp.asarray([0.01, 0.1, 0.5, 0.75, 1.0])
  losses = jnp.asarray(np.stack([_stream(s) for s in streams]), jnp.float32)
  run = jax.vmap(jax.vmap(lambda l, u: ao.simulate(l, start_scale=u)["scale"],
                          (None, 0)), (0, None))
  scales = np.asarray(jit_long(run)(losses, starts))
  lo, hi = scales.min(axis=2), scales.max(axis=2)
  final = scales[:, :, -2000:].mean(axis=2)
  bad = [(s, float(u), float(lo[i, j]), float(hi[i, j]), float(final[i, j]))
         for i, s in enumerate(streams) for j, u in enumerate(starts)
         if not (lo[i, j] >= 1e-3 and hi[i, j] <= 10
                 and 0.04 <= final[i, j] <= 2.0)]
  assert not bad, bad


def test_trendless_streams_end_near_the_given_rate():
  # Tighter than the bounds: no net drift. Declines come from patience
  # drops on trial (undone when the loss did not fall after them) and from
  # the variance damping (a factor of the applied rate, at most 1/(1+relvar)).
  # A smooth descent at the start (a slow sine, a sawtooth's first epoch)
  # falls beyond four standard errors at the cautious start rate; the probe
  # then keeps start_scale (0.1), never less.
  scales = _scales(NULL_STREAMS)
  final = scales[:, -2000:].mean(axis=1)
  bad = [(s, float(f)) for s, f in zip(NULL_STREAMS, final)
         if not 0.04 <= f <= 2.0]
  assert not bad, bad


def test_probe_false_alarm_rate_on_gaussian_noise():
  # The probe grows only on a window better beyond two standard errors: on
  # i.i.d. noise its first test passes with probability ~2.3%, and a growth
  # needs a second pass (the response test) to last. Over 400 streams at
  # most a few percent may end the probe above the given rate.
  keys = jax.random.split(jax.random.PRNGKey(0), 400)
  losses = 1 + 0.1 * jax.vmap(lambda k: jax.random.normal(k, (400,)))(keys)
  scale = jit_long(jax.vmap(lambda l: ao.simulate(l)["scale"][-1]))(losses)
  above = float(np.mean(np.asarray(scale) > 1.0 + 1e-6))
  assert above <= 0.05, above


def test_runaway_never_fires_on_bounded_noise():
  # A cut needs three significant rises in a row and a level twice the
  # lowest window mean: i.i.d. noise of 30% never gets there.
  scale = np.asarray(jit_long(lambda l: ao.simulate(l)["scale"])(
      jnp.asarray(_stream("gauss:0.3", seed=3), jnp.float32)))
  assert scale[200:].min() >= 0.2, scale[200:].min()


@pytest.mark.parametrize("rate", [0.002, 0.01, 0.05])
def test_a_slowly_rising_loss_is_cut_until_it_stops(rate):
  # Open loop: the loss keeps rising (rate% per step, with noise), so every
  # doubling must cut the rate again (the runaway rule; patience drops alone
  # leave 0.12 at 0.2%/step and 0.06 at 1%/step): by 2,000 steps it has been
  # cut by about one halving per doubling.
  rng = np.random.default_rng(0)
  t = _t(2000)
  loss = np.exp(rate * t) * (1 + 0.05 * rng.normal(size=2000))
  with np.errstate(over="ignore"):  # at 5%/step it passes float32's range: inf
    loss = loss.astype(np.float32)
  scale = np.asarray(ao.simulate(jnp.asarray(loss))["scale"])
  doublings = rate * 2000 / np.log(2)
  assert scale[-1] <= 0.5 ** min(6, doublings), (scale[-1], doublings)


def _by_turns(n_calm=100, rounds=12, seed=0):
  """A divergence that goes by turns, as SGD+momentum at 10x the seed demo's
  rate did: a spike (damped), then calm losses well above the old level,
  then a bigger spike."""
  rng = np.random.default_rng(seed)
  calm = 1 + 0.05 * rng.normal(size=n_calm)
  turns = [[3 * 1.6 ** k, 1.5 + 0.2 * k, 1.5 + 0.2 * k] for k in range(rounds)]
  return np.concatenate([calm, np.ravel(turns)])


def test_a_divergence_by_turns_is_cut():
  # Spikes never two in a row: a run that any calm loss ended never reached
  # three (that divergence reached NaN); the calm losses stay above the
  # level, so the run goes on, and each spike beats the last.
  loss = _by_turns()
  stored = np.asarray(ao.simulate(jnp.asarray(loss, jnp.float32),
                                  rules=("spike",))["stored_scale"])
  assert stored[-1] <= 0.5 ** 8, stored[-1]
  # The same spikes with a return to the level between them: no cut.
  back = loss.copy()
  back[100::3][1:] = 0.9
  stored = np.asarray(ao.simulate(jnp.asarray(back, jnp.float32),
                                  rules=("spike",))["stored_scale"])
  assert stored[-1] == 1.0, stored[-1]


def test_the_spike_run_false_alarm_rate_on_heavy_tails():
  # The run's null rate (explosion's docstring): none under Gaussian or
  # Student-t noise; under lognormal noise of sigma 1 (3% of the losses are
  # spikes) about one cut per 10,000 steps (0.88 measured over 16 seeds;
  # 1.9 when a spike need not beat the run's last; 0.62 for the old rule,
  # three spikes in a row, which missed the divergence above).
  kinds = ("gauss:0.3", "student", "lognormal:1.0")
  losses = jnp.asarray(np.stack([_stream(k, seed=s) for k in kinds
                                 for s in range(16)]), jnp.float32)
  run = jit_long(jax.vmap(lambda l: ao.simulate(l, rules=("spike",))[
      "stored_scale"]))
  stored = np.asarray(run(losses)).reshape(len(kinds), 16, -1)
  cuts = (stored[..., 1:] < 0.999 * stored[..., :-1]).sum(-1).mean(-1)
  assert cuts[0] == 0 and cuts[1] == 0, cuts
  assert cuts[2] <= 1.5, cuts


def test_heavy_tailed_noise_is_not_cut_for_good_over_a_long_run():
  # 100,000 steps of noise whose spikes make cutting runs common (about one
  # per 10,000 steps under lognormal sigma 1). Without the cuts' trial
  # (_stable.spike_trial) each cut stayed: the spike rule alone ended at
  # 5e-4 and 2e-3 on these Pareto streams and 0.03 and 0.5 on the
  # lognormal ones. With it, a cut after which the spikes go on is undone.
  kinds = ("pareto:1.5", "lognormal:1.0")
  losses = jnp.asarray(np.stack([_stream(k, seed=s, n=100_000) for k in kinds
                                 for s in range(2)]), jnp.float32)
  run = jit_long(jax.vmap(lambda l: ao.simulate(l, rules=("spike",))[
      "stored_scale"][-1]))
  final = np.asarray(run(losses))
  assert np.all(final >= 0.5), final


def test_heavy_tailed_noise_keeps_the_scale_within_bounds_over_a_long_run():
  # The bound, over ten times its 10,000 steps. Before the trial
  # of the spike runs' cuts the lognormal and Pareto streams left it on
  # this seed (lowest 7.8e-4 and 2.4e-5), the outliers on seed 1 (1.2e-5;
  # benchmarks/results/null_streams_100k.md).
  names = ("lognormal:1.0", "outliers:0.05/10", "pareto:1.5")
  bad = _outside(names, _scales(names, n=100_000))
  assert not bad, bad


def _after_turns(tail):
  """The divergence by turns, then calm losses at the old level, then
  ``tail``: the stored scale at the turns' end and at the end."""
  rng = np.random.default_rng(1)
  turns = _by_turns()
  calm = lambda n: 1 + 0.05 * rng.normal(size=n)  # noqa: E731
  loss = np.concatenate([turns, calm(100), tail, calm(400)])
  stored = np.asarray(ao.simulate(jnp.asarray(loss, jnp.float32),
                                  rules=("spike",))["stored_scale"])
  return stored[len(turns) - 1], stored[-1]


def test_a_spike_cut_stays_when_the_spikes_stop():
  cut, end = _after_turns(np.ones(0))
  assert cut <= 0.5 ** 8, cut
  assert end == cut, (cut, end)


def test_a_spike_cut_after_which_the_spikes_go_on_is_undone_once():
  # One new spike within the trial: the last halving is undone at its end,
  # and only that one (a deep cut is no stray spike's to restore).
  cut, end = _after_turns(np.array([10.0]))
  assert cut <= 0.5 ** 8, cut
  np.testing.assert_allclose(end, 2 * cut, rtol=1e-6)


def _train(loss_fn, params, tx, steps, data=None):
  state = tx.init(params)

  def body(carry, t):
    params, state = carry
    batch = None if data is None else data[t % data.shape[0]]
    loss, g = jax.value_and_grad(loss_fn)(params, batch)
    updates, state = tx.update(g, state, params, value=loss)
    return (optax.apply_updates(params, updates), state), loss

  (params, state), losses = jax.lax.scan(body, (params, state),
                                         jnp.arange(steps))
  return params, np.asarray(losses)


def _cyclic_regression():
  """The issue's case: 10 features and a bias, 8 fixed batches of 32."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, 10)).astype(np.float32)
  y = (x @ rng.normal(size=10) + 3 + 0.1 * rng.normal(size=256)).astype(
      np.float32)
  data = jnp.asarray(np.concatenate([x, y[:, None]], 1).reshape(8, 32, 11))

  def loss_fn(p, b):
    return jnp.mean((b[:, :10] @ p["w"] + p["b"] - b[:, 10]) ** 2)
  return loss_fn, {"w": jnp.zeros(10), "b": jnp.zeros(())}, data


def test_cyclic_regression_with_momentum_converges():
  loss_fn, params, data = _cyclic_regression()
  tx = optax.chain(optax.sgd(0.01, momentum=0.9), ao.adaptive_scale())
  _, losses = _train(loss_fn, params, tx, 2000, data)
  assert np.all(np.isfinite(losses))
  assert losses[-8:].mean() <= 0.1 * losses[:8].mean(), losses[-8:].mean()


# Adam's transient on the valley floor is chaotic: with the same decisions,
# its peak is 8.9x the first loss under XLA's default code generation and
# 12.6x under the suite's cheaper one (tests/conftest.py).
@pytest.mark.parametrize("opt,peak", [(optax.sgd(1e-3, momentum=0.9), 10),
                                      (optax.adam(0.05), 20)],
                         ids=["sgd_m", "adam"])
def test_rosenbrock_stays_finite_and_converges(opt, peak):
  # optax's own test problem from (0, 0); the plain optimizer converges.
  def loss_fn(p, _):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2
  tx = optax.chain(opt, ao.adaptive_scale())
  params, losses = _train(loss_fn, jnp.zeros(2), tx, 5000)
  assert np.all(np.isfinite(np.asarray(params)))
  assert np.all(np.isfinite(losses))
  assert losses.max() <= peak * losses[0], losses.max()
  assert losses[-1] <= 1e-2 * losses[0], losses[-1]


def _reward_stream(kind, n=20_000, per_rollout=16, seed=0):
  """Rewards as PPO feeds them: a rollout's mean return, repeated over its
  minibatch updates. Stationary, except "falling" and "rising"."""
  rng = np.random.default_rng(seed)
  k = n // per_rollout
  failed = rng.random(k) < 0.3  # rollouts with a failed episode
  r = {
      # At the cap, failed episodes pull the mean down: sharp dips, then a
      # recovery over several windows (and the mirror image at a floor).
      "capped": 500 - rng.exponential(40, k) * failed,
      "floored": -500 + rng.exponential(40, k) * failed,
      "gauss": 100 + 10 * rng.normal(size=k),
      "student": 100 + 10 * rng.standard_t(2, size=k),
      # Trends that dominate their noise from window to window.
      "falling": np.linspace(500, 20, k) + 0.1 * rng.normal(size=k),
      "rising": np.linspace(20, 500, k) + 0.1 * rng.normal(size=k),
  }[kind]
  return np.repeat(r, per_rollout)


@pytest.mark.parametrize("preset", [None, "rl"])
def test_a_stationary_reward_does_not_drift_the_rate(preset):
  # The reward rule's moves last while the reward keeps moving their way:
  # without that, a skewed reward (sharp dips, slow recoveries) drifted the
  # scale to 34-342 (capped) or 0.005-0.04 (floored) in 20,000 steps.
  kinds = ("capped", "floored", "gauss", "student", "falling", "rising")
  kw = {"preset": preset} if preset else {"use_reward": True}
  rewards = jnp.asarray(np.stack([_reward_stream(k) for k in kinds]),
                        jnp.float32)
  loss = jnp.asarray(_stream("gauss:0.1", n=rewards.shape[1]), jnp.float32)
  run = jit_long(jax.vmap(lambda r: ao.simulate(loss, r, **kw)["scale"]))
  scales = dict(zip(kinds, np.asarray(run(rewards))))
  bad = [(k, float(s.min()), float(s.max()), float(s[-1]))
         for k, s in scales.items() if k not in ("falling", "rising")
         and not (s.min() >= 0.1 and s.max() <= 10 and 0.5 <= s[-1] <= 2)]
  assert not bad, bad
  # A trend still moves it.
  assert scales["falling"][-1] < 0.5, scales["falling"][-1]
  assert scales["rising"][-1] > 1.3, scales["rising"][-1]


def test_a_stationary_reward_does_not_drift_the_momentum():
  """``adaptive_hyperparams`` drives the momentum from the reward too: its
  moves share the rate's trial and go down by no more than up. Before, a
  stationary reward took it from 0.9 to 0.04-0.16 in 20,000 steps (+0.01 up
  against x0.9 down, never undone); now 0.85-0.95. A trend still moves it."""
  kinds = ("capped", "floored", "gauss", "student", "falling", "rising")
  rewards = jnp.asarray(np.stack([_reward_stream(k) for k in kinds]),
                        jnp.float32)
  loss = jnp.asarray(_stream("gauss:0.1", n=rewards.shape[1]), jnp.float32)
  run = jit_long(jax.vmap(lambda r: ao.simulate(
      loss, r, learning_rate=0.05, momentum=0.9, use_reward=True)["momentum"]))
  moms = dict(zip(kinds, np.asarray(run(rewards))))
  bad = [(k, float(m.min()), float(m.max())) for k, m in moms.items()
         if k not in ("falling", "rising")
         and not (m.min() >= 0.8 and m.max() <= 0.97)]
  assert not bad, bad
  assert moms["falling"][-1] < 0.5, moms["falling"][-1]
  assert moms["rising"][-1] > 0.99, moms["rising"][-1]


@pytest.mark.parametrize("preset", [None, "rl"])
def test_a_hard_rollout_does_not_cut_a_reward_driven_rate(preset):
  # PPO: a rollout with a failed episode lowers the mean return and raises
  # the loss for all 16 of its minibatch updates: a run of 16 spikes while
  # the reward falls. Three spikes in a row cut the rate (explosion), each
  # further one again: ~14 halvings per hard rollout, a collapse to
  # min_scale. With a reward only non-finite losses count.
  n, k = 20_000, 16
  rng = np.random.default_rng(0)
  hard = rng.random(n // k) < 0.1
  rewards = np.repeat(np.where(hard, 300.0, 500.0), k)
  losses = np.repeat(np.where(hard, 5.0, 1.0), k) * (1 + 0.05 * rng.normal(size=n))
  kw = {"preset": preset} if preset else {"use_reward": True}
  run = jit_long(lambda l, r: ao.simulate(l, r, **kw))
  out = run(jnp.asarray(losses, jnp.float32), jnp.asarray(rewards, jnp.float32))
  stored, applied = np.asarray(out["stored_scale"]), np.asarray(out["scale"])
  # The runaway rule may halve it once or twice (window means vary 5x: at
  # most log2(5) cuts); the spike damps the hard steps (at most 10x).
  assert stored.min() >= 0.2 and stored.max() <= 5, (stored.min(), stored.max())
  assert applied.min() >= 0.02, applied.min()
  # A non-finite loss still counts: a run of them cuts.
  losses[5000:5003] = np.nan
  s = np.asarray(run(jnp.asarray(losses, jnp.float32),
                     jnp.asarray(rewards, jnp.float32))["scale"])
  assert s[5004] < 0.75 * s[4990], (s[4990], s[5004])
