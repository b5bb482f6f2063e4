"""TensorBoard: metrics of a lax.scan chunk, written by tensorboardX, read back."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tensorboard.backend.event_processing import event_accumulator

import adaptive_optax as ao
from adaptive_optax import toy

pytest.importorskip("tensorboardX")
T = 16
REQUIRED = {
    "adaptive_scale": ("scale", "loss", "loss_ema", "loss_variance",
                       "steps_since_improve", "cooldown", "cosine_phase"),
    "adaptive_hyperparams": ("learning_rate", "momentum", "loss", "loss_ema",
                             "loss_variance", "steps_since_improve",
                             "cooldown", "cosine_phase"),
}
POLICY = dict(var_window=4, patience=2, cooldown=3, use_cosine=True, T0=5)
TXS = {
    "adaptive_scale": lambda: optax.chain(optax.sgd(0.05),
                                          ao.adaptive_scale(**POLICY)),
    "adaptive_hyperparams": lambda: ao.adaptive_hyperparams(
        optax.sgd, learning_rate=0.05, momentum=0.9, **POLICY),
}


def _chunks(tx, n_chunks):
  """Trains the toy MLP in jitted lax.scan chunks; yields stacked metrics."""
  data = toy.make_toy_dataset()
  params = toy.init_mlp(jax.random.PRNGKey(0))
  idx = toy.batch_indices(jax.random.PRNGKey(1), T * n_chunks)

  @jax.jit
  def chunk(carry, ix):
    def body(carry, ix):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(toy.mse)(params, data.x[ix], data.y[ix])
      updates, opt_state = tx.update(grads, opt_state, params, value=loss)
      params = optax.apply_updates(params, updates)
      return (params, opt_state), {**ao.metrics(opt_state), "loss": loss}
    return jax.lax.scan(body, carry, ix)

  carry = (params, tx.init(params))
  for i in range(n_chunks):
    carry, out = chunk(carry, idx[i * T:(i + 1) * T])
    yield out


def _read(logdir):
  acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={
      event_accumulator.SCALARS: 0})
  acc.Reload()
  return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize("name", sorted(TXS))
def test_scan_chunks_are_read_back_by_tensorboard(tmp_path, name):
  chunks = list(_chunks(TXS[name](), 2))
  with ao.logging.TensorBoardLogger(tmp_path) as tb:
    step = 0
    for out in chunks:
      step = tb.log(out, step=step)
  assert step == 2 * T
  scalars = _read(tmp_path)
  for key in REQUIRED[name]:
    events = scalars[f"adaptive_optax/{key}"]
    want = np.concatenate([np.asarray(c[key], np.float32) for c in chunks])
    assert [e.step for e in events] == list(range(2 * T))
    np.testing.assert_array_equal(
        np.array([e.value for e in events], np.float32), want, err_msg=key)


def test_a_chunk_is_one_host_transfer(tmp_path, monkeypatch):
  out = next(_chunks(TXS["adaptive_scale"](), 1))
  calls = []
  real = jax.device_get
  monkeypatch.setattr(jax, "device_get",
                      lambda x: calls.append(1) or real(x))
  with ao.logging.TensorBoardLogger(tmp_path) as tb:
    tb.log(out, step=0)
  assert len(calls) == 1
  assert len(_read(tmp_path)["adaptive_optax/scale"]) == T


def test_one_step_from_the_state(tmp_path):
  tx = TXS["adaptive_hyperparams"]()
  params = jnp.ones(3)
  state = tx.init(params)
  _, state = jax.jit(lambda s: tx.update(params, s, params, value=2.0))(state)
  with ao.logging.TensorBoardLogger(tmp_path, prefix="opt") as tb:
    assert tb.log_state(state, step=7, loss=2.0) == 8
  scalars = _read(tmp_path)
  assert [(e.step, e.value) for e in scalars["opt/loss"]] == [(7, 2.0)]
  np.testing.assert_allclose(scalars["opt/learning_rate"][0].value,
                             ao.metrics(state)["learning_rate"], rtol=1e-6)


@pytest.mark.parametrize("metrics", [
    {"scale": np.ones(4), "loss": np.ones(3)},
    {"scale": np.ones(4), "loss": np.float32(1.0)},
    {"scale": np.ones((4, 2))},
])
def test_ragged_chunks_are_rejected(tmp_path, metrics):
  with ao.logging.TensorBoardLogger(tmp_path) as tb:
    with pytest.raises(ValueError, match="shape"):
      tb.log(metrics, step=0)
