"""Nothing lost: saved states resume exactly; foreign states are refused."""

import functools
import pickle

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adaptive_optax as ao
from adaptive_optax import _state
from adaptive_optax import toy

STEPS, SPLIT = 40, 17
POLICY = dict(var_window=5, patience=3, cooldown=4, use_cosine=True, T0=7,
              use_reward=True)


def make_tx(front, mode="stable", **overrides):
  policy = {**POLICY, "mode": mode, **overrides}
  if front == "scale":
    return optax.chain(optax.sgd(0.05, momentum=0.9), ao.adaptive_scale(**policy))
  return ao.adaptive_hyperparams(optax.sgd, learning_rate=0.05, momentum=0.9,
                                 **policy)


@functools.lru_cache(maxsize=None)
def _tx_and_runner(front, mode):
  """One compiled run per configuration, shared by the save methods."""
  tx = make_tx(front, mode)
  data = toy.make_toy_dataset()
  idx = toy.batch_indices(jax.random.PRNGKey(1), STEPS)

  @jax.jit
  def run(params, state, start, stop):
    def body(t, carry):
      params, state = carry
      ix = idx[t]
      loss, grads = jax.value_and_grad(toy.mse)(params, data.x[ix], data.y[ix])
      updates, state = tx.update(grads, state, params, value=loss, reward=-loss)
      return optax.apply_updates(params, updates), state
    return jax.lax.fori_loop(start, stop, body, (params, state))

  return tx, run


def _roundtrip(how, state, template, tx):
  if how == "flax_from_bytes":
    return flax.serialization.from_bytes(template, flax.serialization.to_bytes(state))
  if how == "flax_restore_state":
    data = flax.serialization.to_bytes(state)
    return ao.restore_state(template, flax.serialization.msgpack_restore(data))
  if how == "pickle":
    return ao.restore_state(template, pickle.loads(pickle.dumps(state)))
  if how == "state_to_bytes":
    return ao.state_from_bytes(ao.state_to_bytes(state, tx), template, tx)
  raise ValueError(how)


HOWS = ("flax_from_bytes", "flax_restore_state", "pickle", "state_to_bytes")


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("mode", ["stable", "reference"])
@pytest.mark.parametrize("front", ["scale", "hyperparams"])
def test_resumed_run_equals_uninterrupted_run_exactly(front, mode, how):
  tx, run = _tx_and_runner(front, mode)
  params = toy.init_mlp(jax.random.PRNGKey(0))
  state = tx.init(params)
  want = run(params, state, 0, STEPS)
  p_mid, s_mid = run(params, state, 0, SPLIT)
  s_mid = _roundtrip(how, s_mid, tx.init(params), tx)
  got = run(p_mid, s_mid, SPLIT, STEPS)
  assert int(ao.metrics(got[1])["num_steps"]) == STEPS
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


@pytest.mark.parametrize("how", HOWS)
def test_roundtrip_keeps_structure_dtypes_and_shapes(how):
  tx = make_tx("hyperparams", "stable")
  params = toy.init_mlp(jax.random.PRNGKey(0))
  state = tx.init(params)
  back = _roundtrip(how, state, tx.init(params), tx)
  assert jax.tree.structure(back) == jax.tree.structure(state)
  for b, s in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
    assert (np.asarray(b).dtype, np.shape(b)) == (s.dtype, s.shape)


# (what differs, overrides of the saved optimizer, the error must name)
LAYOUT_CHANGES = [
    ("var_window", dict(var_window=9), "var_window"),
    ("momentum driven", dict(front="hyperparams_no_momentum"), "momentum"),
    ("another optimizer", dict(front="adam"), "saved from another optimizer"),
]


def _make(front, **overrides):
  if front == "hyperparams_no_momentum":
    return ao.adaptive_hyperparams(optax.sgd, learning_rate=0.05, **POLICY,
                                   **overrides)
  if front == "adam":
    return ao.adaptive_hyperparams(optax.adam, learning_rate=0.05, **POLICY,
                                   **overrides)
  return make_tx(front, **overrides)


@pytest.mark.parametrize("how", ["flax_restore_state", "pickle", "state_to_bytes"])
@pytest.mark.parametrize("what,saved_with,message", LAYOUT_CHANGES,
                         ids=[c[0] for c in LAYOUT_CHANGES])
def test_state_with_another_layout_is_refused(what, saved_with, message, how):
  del what
  params = jnp.zeros(3)
  saved_with = dict(saved_with)
  old_tx = _make(saved_with.pop("front", "hyperparams"), **saved_with)
  new_tx = _make("hyperparams")
  with pytest.raises(ValueError, match=message):
    _roundtrip(how, old_tx.init(params), new_tx.init(params), new_tx)


@pytest.mark.parametrize("switch,saved,now", [
    ("use_cosine", False, True),
    ("use_reward", True, False),
    ("mode", "reference", "stable"),
])
@pytest.mark.parametrize("front", ["scale", "hyperparams"])
def test_state_from_other_switches_is_refused_by_state_from_bytes(
    front, switch, saved, now):
  """These switches leave the layout alone: only the saved config tells."""
  params = jnp.zeros(3)
  old_tx = _make(front, **{switch: saved})
  new_tx = _make(front, **{switch: now})
  data = ao.state_to_bytes(old_tx.init(params), old_tx)
  with pytest.raises(ValueError, match=f"{switch}={saved!r}.*{switch}={now!r}"):
    ao.state_from_bytes(data, new_tx.init(params), new_tx)


def test_float64_state_is_refused_by_a_float32_optimizer():
  tx = _make("scale")
  with jax.enable_x64(True):
    state64 = tx.init(jnp.zeros(3, jnp.float64))
    data = ao.state_to_bytes(state64, tx)
  template = tx.init(jnp.zeros(3, jnp.float32))
  with pytest.raises(ValueError, match="saved float64.*expected float32"):
    ao.state_from_bytes(data, template, tx)


def test_changed_numeric_hyperparameters_are_accepted():
  """Retuning e.g. up_factor on resume is allowed: only the layout and the
  static switches are checked."""
  params = jnp.zeros(3)
  old_tx, new_tx = _make("scale"), _make("scale", up_factor=1.2, patience=9)
  state = old_tx.init(params)
  back = ao.state_from_bytes(ao.state_to_bytes(state, old_tx),
                             new_tx.init(params), new_tx)
  assert jax.tree.structure(back) == jax.tree.structure(state)


def test_controller_count_mismatch_is_refused():
  params = jnp.zeros(3)
  one = _make("scale")
  two = optax.chain(_make("scale"), ao.adaptive_scale())
  with pytest.raises(ValueError, match="1 adaptive_optax controller"):
    ao.state_from_bytes(ao.state_to_bytes(one.init(params), one),
                        two.init(params), two)


def test_bytes_from_elsewhere_are_refused():
  tx = _make("scale")
  state = tx.init(jnp.zeros(3))
  with pytest.raises(ValueError, match="not written by state_to_bytes"):
    ao.state_from_bytes(flax.serialization.to_bytes(state), state, tx)


@pytest.mark.parametrize("front", ["scale", "hyperparams"])
def test_controller_configs_reads_every_switch(front):
  tx = _make(front, var_window=7, mode="reference", use_reward=False)
  (cfg,) = ao.controller_configs(tx.init(jnp.zeros(2)))
  want = dict(mode="reference", var_window=7, use_reward=False,
              use_cosine=True, has_momentum=front == "hyperparams",
              layout=_state.LAYOUT)
  assert {k: cfg[k] for k in want} == want
  assert set(cfg) == set(_state.Config._fields)
