"""The contracts the README states: one source of defaults and layout, clear
errors for the wrong value or object, states that describe themselves."""

import inspect
import json
import pickle

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state

import adaptive_optax as ao
from adaptive_optax import _options
from adaptive_optax import _state
from adaptive_optax.flax_utils import TrainState

PARAMS = {"w": jnp.zeros(3)}


def _default(fn, name):
  return inspect.signature(fn).parameters[name].default


# --- One schema -------------------------------------------------------------


def test_adaptive_scale_signature_defaults_are_the_table_s():
  sig = inspect.signature(ao.adaptive_scale).parameters
  for name, default in {**_options.POLICY_DEFAULTS, **_options.SCALE_BOUNDS,
                        **_options.STATIC_DEFAULTS}.items():
    assert name in sig, f"adaptive_scale lacks {name}"
    assert sig[name].default == default, name
    assert type(sig[name].default) is type(default), name


def test_adaptive_hyperparams_bounds_defaults_are_the_table_s():
  for name, default in _options.LR_BOUNDS.items():
    assert _default(ao.adaptive_hyperparams, name) == default
  assert (_default(ao.adaptive_hyperparams, "mode")
          == _options.STATIC_DEFAULTS["mode"])


def test_every_hyperparameter_is_documented():
  doc = ao.adaptive_scale.__doc__
  for name in list(_options.POLICY_DEFAULTS) + list(_options.STATIC_DEFAULTS):
    assert f"\n    {name}: " in doc, f"adaptive_scale's Args lack {name}"


def test_hyperparams_are_the_table_plus_the_two_bounds():
  assert _options.Hyperparams._fields == (
      tuple(_options.POLICY_DEFAULTS) + ("rate_min", "rate_max"))


def test_fields_views_and_packing_come_from_the_schema():
  names = tuple(n for n, _, _, _ in _state.SCHEMA)
  assert _state.Fields._fields == names
  ctrl = ao.adaptive_scale().init(PARAMS).controller
  assert ctrl.stats.shape == (len(_state.FLOATS) + 20,)
  assert ctrl.counters.shape == (len(_state.COUNTERS),)
  for name, kind, _, _ in _state.SCHEMA:
    assert hasattr(ctrl, name), name
    dtype = getattr(ctrl, name).dtype
    want = {"int": jnp.int32, "bool": jnp.bool_}.get(kind, jnp.float32)
    assert dtype == want, name


def test_initial_values_are_the_schema_s():
  cfg = _state.Config(var_window=4)
  hp = _options.Hyperparams(**_options.POLICY_DEFAULTS, rate_min=0.0,
                            rate_max=1.0)
  fields = _state.initial_fields(hp, cfg, 0.3, 0.9, jnp.float32)
  start = _state.Start(hp, cfg, 0.3, 0.9)
  for name, _, initial, _ in _state.SCHEMA:
    want = initial(start) if callable(initial) else initial
    np.testing.assert_allclose(
        np.broadcast_to(np.asarray(getattr(fields, name), float),
                        np.shape(getattr(fields, name))),
        np.asarray(want, float), err_msg=name, rtol=1e-6)


def test_layout_fingerprint_changes_with_the_order_or_names():
  schema = _state.SCHEMA
  swapped = (schema[0], schema[1], schema[3], schema[2]) + schema[4:]
  renamed = (("x",) + schema[-1][1:],) + schema[:-1]
  assert _state.fingerprint(schema) == _state.LAYOUT
  assert _state.fingerprint(swapped) != _state.LAYOUT
  assert _state.fingerprint(renamed) != _state.LAYOUT


# --- replace ------------------------------------------------------------------


def test_replace_takes_python_numbers_and_keeps_dtypes():
  ctrl = ao.adaptive_scale().init(PARAMS).controller
  new = ctrl.replace(stored_rate=0.1, applied_rate=0.2, num_steps=3,
                     probing=0)
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(ctrl)):
    assert isinstance(a, jax.Array)
    assert (a.dtype, a.shape) == (b.dtype, b.shape)
  assert float(new.stored_rate) == pytest.approx(0.1)
  assert int(new.num_steps) == 3 and not bool(new.probing)


def test_replace_under_x64_keeps_the_state_s_float32():
  ctrl = ao.adaptive_scale().init(PARAMS).controller
  with jax.enable_x64(True):
    new = ctrl.replace(loss_ema=jnp.float64(2.0),
                       applied_rate=np.float64(0.5))
  assert new.stats.dtype == jnp.float32
  assert new.applied_rate.dtype == jnp.float32


def test_replace_refuses_a_wrong_shape_and_stacked_states():
  ctrl = ao.adaptive_scale(var_window=4).init(PARAMS).controller
  with pytest.raises(ValueError, match="loss_window must have shape"):
    ctrl.replace(loss_window=jnp.zeros(5))
  stacked = jax.tree.map(lambda x: jnp.stack([x, x]), ctrl)
  with pytest.raises(ValueError, match="jax.vmap"):
    stacked.replace(loss_ema=1.0)


# --- Wrong value, wrong object -----------------------------------------------


@pytest.mark.parametrize("front", ["scale", "hyperparams"])
def test_value_with_aux_names_the_fix(front):
  tx = (ao.adaptive_scale() if front == "scale"
        else ao.adaptive_hyperparams(optax.sgd, learning_rate=0.1))
  state = tx.init(PARAMS)
  loss_and_aux = (jnp.float32(1.0), {"acc": jnp.ones(4)})
  with pytest.raises(ValueError, match=r"value must be a scalar.*value=loss"):
    tx.update(PARAMS, state, PARAMS, value=loss_and_aux)


def test_missing_value_through_flax_s_own_train_state_points_to_ours():
  state = train_state.TrainState.create(
      apply_fn=None, params=PARAMS,
      tx=optax.chain(optax.sgd(0.1), ao.adaptive_scale()))
  with pytest.raises(TypeError, match="adaptive_optax.flax_utils.TrainState"):
    state.apply_gradients(grads=PARAMS)
  ours = TrainState.create(apply_fn=None, params=PARAMS, tx=state.tx)
  assert int(ours.apply_gradients(grads=PARAMS, value=1.0).step) == 1


def test_an_optimizer_instance_is_refused_with_the_fix():
  with pytest.raises(TypeError, match=r"factory such as optax\.sgd"):
    ao.adaptive_hyperparams(optax.sgd(0.05), learning_rate=0.05)


# --- States describe themselves ----------------------------------------------


def _wrapped(mode):
  inner = optax.chain(optax.sgd(0.1), ao.adaptive_scale(mode=mode,
                                                        use_cosine=True))
  return {
      "MultiSteps": optax.MultiSteps(inner, every_k_schedule=2),
      "gradient_transformation": optax.MultiSteps(
          inner, every_k_schedule=2).gradient_transformation(),
      "jitted": optax.GradientTransformationExtraArgs(
          jax.jit(inner.init), jax.jit(inner.update)),
  }


@pytest.mark.parametrize("wrapper", ["MultiSteps", "gradient_transformation",
                                     "jitted"])
def test_configs_travel_with_the_state_under_any_wrapper(wrapper):
  saved_tx = _wrapped("stable")[wrapper]
  new_tx = _wrapped("reference")[wrapper]
  state = saved_tx.init(PARAMS)
  (cfg,) = ao.controller_configs(state)
  assert (cfg["mode"], cfg["use_cosine"]) == ("stable", True)
  data = ao.state_to_bytes(state, saved_tx)
  same = ao.state_from_bytes(data, saved_tx.init(PARAMS), saved_tx)
  assert jax.tree.structure(same) == jax.tree.structure(state)
  with pytest.raises(ValueError, match="mode='stable'.*mode='reference'"):
    ao.state_from_bytes(data, new_tx.init(PARAMS), new_tx)


def test_a_state_loaded_past_the_checks_is_refused_at_the_step():
  """flax.serialization.from_bytes restores whatever the bytes say; the
  step then refuses a state made under another configuration."""
  old = ao.adaptive_scale(mode="stable")
  new = ao.adaptive_scale(mode="reference")
  loaded = flax.serialization.from_bytes(
      new.init(PARAMS), flax.serialization.to_bytes(old.init(PARAMS)))
  with pytest.raises(ValueError, match="mode='stable'.*mode='reference'"):
    new.update(PARAMS, loaded, PARAMS, value=1.0)
  unpickled = pickle.loads(pickle.dumps(old.init(PARAMS)))
  with pytest.raises(ValueError, match="mode="):
    jax.jit(lambda s: new.update(PARAMS, s, PARAMS, value=1.0))(unpickled)


def test_a_checkpoint_packed_another_way_is_refused():
  tx = ao.adaptive_scale()
  state = tx.init(PARAMS)
  ctrl = state.controller
  other = state._replace(controller=ctrl._replace(
      config=ctrl.config._replace(layout="0123456789abcdef")))
  data = ao.state_to_bytes(other)
  for load in (lambda: ao.state_from_bytes(data, state),
               lambda: ao.restore_state(
                   state, flax.serialization.msgpack_restore(
                       flax.serialization.to_bytes(other)))):
    with pytest.raises(ValueError, match="another packing"):
      load()
  with pytest.raises(ValueError, match="packed differently"):
    tx.update(PARAMS, other, PARAMS, value=1.0)


def test_controller_configs_wants_the_state():
  with pytest.raises(TypeError, match=r"tx\.init\(params\)"):
    ao.controller_configs(ao.adaptive_scale())


# --- Small things --------------------------------------------------------------


def test_metrics_read_stacked_states():
  tx = ao.adaptive_hyperparams(optax.sgd, learning_rate=0.1, momentum=0.9,
                               var_window=3)

  def run(scale):
    def body(state, i):
      loss = scale * (1.0 + i % 2)
      return tx.update(PARAMS, state, PARAMS, value=loss)[1], None
    return jax.lax.scan(body, tx.init(PARAMS), jnp.arange(5))[0]

  scales = jnp.array([1.0, 2.0, 3.0])
  # One program (one compilation): the runs vmapped, and each run on its own,
  # unbatched, one after another (lax.map).
  stacked, each = jax.jit(lambda s: (jax.vmap(run)(s), jax.lax.map(run, s)))(
      scales)
  m = ao.metrics(stacked)
  assert m["loss_variance"].shape == (3,) and m["momentum"].shape == (3,)
  for i in range(len(scales)):
    one = ao.metrics(jax.tree.map(lambda x, i=i: x[i], each))
    for k, v in one.items():
      np.testing.assert_allclose(m[k][i], v, rtol=1e-6, err_msg=k)


def test_save_config_creates_missing_folders(tmp_path):
  path = tmp_path / "runs" / "exp1" / "adaptive.json"
  ao.save_config(path, {"patience": 7})
  assert json.loads(path.read_text()) == {"patience": 7}
  assert ao.load_config(path) == {"patience": 7}


@pytest.mark.parametrize("fn", [ao.adaptive_scale, ao.adaptive_hyperparams,
                                ao.simulate], ids=lambda f: f.__name__)
def test_front_ends_document_preset(fn):
  assert "\n    preset: " in fn.__doc__
  assert "preset" in inspect.signature(fn).parameters


def test_preset_with_an_override_works_where_spreading_cannot():
  with pytest.raises(TypeError):
    ao.adaptive_scale(**ao.presets.rl, reward_down=0.9)  # Python's own rule
  tx = ao.adaptive_scale(preset="rl", reward_down=0.9)
  assert ao.controller_configs(tx.init(PARAMS))[0]["use_reward"]
  assert "preset=\"rl\", reward_down=0.9" in ao.presets.__doc__


def test_ignored_reward_and_unused_momentum_args_are_documented():
  doc = " ".join(ao.adaptive_scale.__doc__.split())
  assert "reward= given to update is ignored" in doc.replace("``", "")
  assert "unused here" not in doc
  for name in ("momentum_up", "momentum_down", "momentum_min",
               "momentum_max"):
    assert f"{name}: " in doc
  assert "no effect here" in doc


def test_reward_is_ignored_without_use_reward(mode):
  tx = ao.adaptive_scale(mode=mode, var_window=3)
  a = tx.init(PARAMS)
  b = tx.init(PARAMS)
  for i in range(6):
    loss = 1.0 + (i % 3)
    _, a = tx.update(PARAMS, a, PARAMS, value=loss)
    _, b = tx.update(PARAMS, b, PARAMS, value=loss, reward=100.0 * i)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
