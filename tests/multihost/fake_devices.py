"""The controller on 8 fake CPU devices: pmap, NamedSharding jit, shard_map.

Run as a script (``python tests/multihost/fake_devices.py``); it forces 8 host
devices, which must happen before JAX starts, so it never runs inside the
test process (whose other tests keep one device). It prints one JSON object
of measured differences; tests/test_multidevice.py asserts on them.

``--inputs=FILE`` reads the inputs (the toy data, the initial parameters,
the batch order) from FILE, written by save_inputs (the test process does,
where they are likely compiled already); without it they are generated here.
"""

import functools
import json
import os
import sys

N_DEVICES = 8
PMAP_STEPS = 500
JIT_STEPS = 30
PER_DEVICE_BATCH = 16


def _max_abs(a, b):
  import jax
  import numpy as np
  diffs = jax.tree.map(
      lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64)
                                       - np.asarray(y, np.float64)),
                                initial=0.0)), a, b)
  return max(jax.tree.leaves(diffs), default=0.0)


def _max_rel(a, b):
  import jax
  import numpy as np
  def rel(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.max(np.abs(x - y) / (np.abs(y) + 1e-30), initial=0.0))
  return max(jax.tree.leaves(jax.tree.map(rel, a, b)), default=0.0)


class _CompileCounter:
  """Counts XLA compilations (any function) while active."""

  def __init__(self):
    import jax
    self.count = 0
    self.active = False
    def listener(event, duration, **kwargs):
      del duration, kwargs
      if self.active and "backend_compile" in event:
        self.count += 1
    jax.monitoring.register_event_duration_secs_listener(listener)


# Set-up and read-out run as jitted programs or in NumPy, not op by op: each
# eager jax.numpy op on a new shape is an XLA compilation of its own (over a
# hundred of them here), and compiling is most of this script's time.


_INPUTS_FILE = []  # set by main from --inputs=FILE


def _generate_inputs():
  """The toy data set, the MLP's initial parameters and the sharded runs'
  batch order, computed op by op as toy's users do (under jit, XLA fuses
  y = x w + 0.1 noise and y differs in its last bits)."""
  import jax
  import numpy as np
  from adaptive_optax import toy
  data = toy.make_toy_dataset()
  params0 = toy.init_mlp(jax.random.PRNGKey(0))
  idx = np.asarray(toy.batch_indices(jax.random.PRNGKey(1), JIT_STEPS))
  return data, params0, idx


def save_inputs(path):
  """Writes _generate_inputs() to ``path`` (.npz), for --inputs."""
  import jax
  import numpy as np
  data, params0, idx = _generate_inputs()
  leaves = {f"param_{i}": a for i, a in enumerate(jax.tree.leaves(params0))}
  np.savez(path, x=data.x, y=data.y, idx=idx, **leaves)


@functools.cache
def _inputs():
  import jax
  import jax.numpy as jnp
  import numpy as np
  from adaptive_optax import toy
  if not _INPUTS_FILE:
    return _generate_inputs()
  with np.load(_INPUTS_FILE[0]) as f:
    arrays = dict(f)
  structure = jax.tree.structure(
      jax.eval_shape(lambda: toy.init_mlp(jax.random.PRNGKey(0))))
  params0 = jax.tree.unflatten(structure, [
      jnp.asarray(arrays[f"param_{i}"]) for i in range(structure.num_leaves)])
  data = toy.Dataset(jnp.asarray(arrays["x"]), jnp.asarray(arrays["y"]))
  return data, params0, arrays["idx"]


def _dataset():
  return _inputs()[0]


def _init(tx, params):
  import jax
  return jax.jit(tx.init)(params)


def _shards(n_dev, per_dev):
  """Device d's batch at step t: rows of its own 64-sample shard."""
  import jax.numpy as jnp
  import numpy as np
  data = _dataset()
  x = jnp.asarray(np.asarray(data.x).reshape(n_dev, -1, data.x.shape[-1]))
  y = jnp.asarray(np.asarray(data.y).reshape(n_dev, -1, 1))
  rows = x.shape[1]
  def batch(t):
    idx = (t * per_dev + jnp.arange(per_dev)) % rows
    return x[:, idx], y[:, idx]
  return batch


def pmap_report():
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  import adaptive_optax as ao
  from adaptive_optax import toy

  batch = _shards(N_DEVICES, PER_DEVICE_BATCH)
  params0 = _inputs()[1]

  def make_tx(axis_name):
    return ao.adaptive_hyperparams(
        optax.sgd, learning_rate=0.05, momentum=0.9, use_cosine=True, T0=50,
        patience=10, cooldown=20, axis_name=axis_name)

  # Both runs, with and without axis_name, in one program: one compilation.
  tx_ax, tx_no, tx1 = make_tx("batch"), make_tx(None), make_tx(None)

  def device_run(params, x_all, y_all):
    def train(tx):
      def body(carry, t):
        params, state = carry
        d = jax.lax.axis_index("batch")
        loss, grads = jax.value_and_grad(toy.mse)(params, x_all[t, d],
                                                  y_all[t, d])
        grads = jax.lax.pmean(grads, "batch")
        updates, state = tx.update(grads, state, params, value=loss)
        params = optax.apply_updates(params, updates)
        return (params, state), (state.controller,
                                 jax.lax.pmean(loss, "batch"))
      (p, _), (ctrls, mean_loss) = jax.lax.scan(
          body, (params, tx.init(params)), jnp.arange(PMAP_STEPS))
      return p, ctrls, mean_loss
    return train(tx_ax), train(tx_no)

  xs, ys = jax.jit(jax.vmap(batch))(jnp.arange(PMAP_STEPS))  # (T, D, B, ...)
  rep = jax.tree.map(
      lambda a: np.broadcast_to(np.asarray(a), (N_DEVICES,) + a.shape), params0)
  run = jax.pmap(device_run, axis_name="batch", in_axes=(0, None, None))
  (params_ax, ctrls_ax, mean_loss), (params_no, ctrls_no, _) = jax.device_get(
      run(rep, xs, ys))

  def spread(tree):  # largest difference between any device and device 0
    return _max_abs(jax.tree.map(lambda a: a[1:], tree),
                    jax.tree.map(lambda a: np.broadcast_to(a[:1], a[1:].shape),
                                 tree))

  @jax.jit
  def single(losses):
    """On one device: the controller replaying the all-reduced losses, and
    training on the union of the 8 shards' batches."""
    p1 = params0
    zeros = jax.tree.map(jnp.zeros_like, p1)
    def replay_body(state, loss):
      _, state = tx1.update(zeros, state, p1, value=loss)
      return state, state.controller
    replayed = jax.lax.scan(replay_body, tx1.init(p1), losses)[1]
    def body(carry, t):
      params, state = carry
      x, y = batch(t)
      x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, 1)
      loss, grads = jax.value_and_grad(toy.mse)(params, x, y)
      updates, state = tx1.update(grads, state, params, value=loss)
      return (optax.apply_updates(params, updates), state), state.controller
    (params, _), ctrls = jax.lax.scan(body, (params0, tx1.init(params0)),
                                      jnp.arange(PMAP_STEPS))
    return replayed, params, ctrls
  replayed, params_1, ctrls_1 = jax.device_get(single(mean_loss[0]))
  ctrl_dev0 = jax.tree.map(lambda a: a[0], ctrls_ax)
  ys = np.asarray(ys)
  return dict(
      devices=jax.device_count(),
      steps=PMAP_STEPS,
      loss_spread_across_devices=float(np.max(  # the first 4 steps' batches
          np.std(ys[:4].mean(axis=(2, 3)), axis=1))),
      with_axis_state_spread=spread(ctrls_ax),
      with_axis_param_spread=spread(params_ax),
      with_axis_vs_replay_max_abs=_max_abs(ctrl_dev0, replayed),
      with_axis_vs_single_rate_max_rel=_max_rel(ctrl_dev0.applied_rate,
                                                ctrls_1.applied_rate),
      with_axis_vs_single_params_max_abs=_max_abs(
          jax.tree.map(lambda a: a[0], params_ax), params_1),
      with_axis_vs_single_decisions_differ=int(np.sum(
          ctrl_dev0.steps_since_improve != ctrls_1.steps_since_improve)),
      without_axis_state_spread=spread(ctrls_no),
      with_axis_lr_min=float(ctrl_dev0.applied_rate.min()),
      with_axis_lr_max=float(ctrl_dev0.applied_rate.max()),
      without_axis_steps_lr_differs=int(np.sum(
          np.ptp(ctrls_no.applied_rate, axis=0) > 0)),
      without_axis_max_lr_ratio=float(np.max(
          ctrls_no.applied_rate.max(0) / ctrls_no.applied_rate.min(0))),
      without_axis_param_spread=spread(params_no),
  )


def _sharded_setup():
  import optax
  import adaptive_optax as ao
  tx = optax.chain(optax.sgd(0.05, momentum=0.9),
                   ao.adaptive_scale(use_cosine=True, T0=10, var_window=5))
  data, params0, idx = _inputs()
  return tx, data, idx, params0


def _single_device_run(tx, data, idx, params0):
  """The same steps on one device (the default one), nothing sharded."""
  import jax
  import optax
  from adaptive_optax import toy
  @jax.jit
  def step(params, state, ix):
    loss, grads = jax.value_and_grad(toy.mse)(params, data.x[ix], data.y[ix])
    updates, state = tx.update(grads, state, params, value=loss)
    return optax.apply_updates(params, updates), state
  params, state = params0, _init(tx, params0)
  for t in range(idx.shape[0]):
    params, state = step(params, state, idx[t])
  return params, state


def named_sharding_report():
  import jax
  import optax
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P
  from adaptive_optax import toy

  tx, data, idx, params0 = _sharded_setup()
  # Auto axes: the compiler propagates the parameters' sharding (GSPMD).
  mesh = jax.make_mesh((N_DEVICES,), ("model",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  ns = lambda *spec: NamedSharding(mesh, P(*spec))
  # Hidden units sharded over the 8 devices; the controller replicated.
  p_shard = [dict(w=ns(None, "model"), b=ns("model")),
             dict(w=ns("model", None), b=ns())]
  params = jax.device_put(params0, p_shard)
  sgd_state, ctrl_state = _init(tx, params0)
  sgd_state = (sgd_state[0]._replace(
      trace=jax.device_put(sgd_state[0].trace, p_shard)), sgd_state[1])
  state = (sgd_state, jax.device_put(ctrl_state, ns()))
  x, y = jax.device_put((data.x, data.y), ns())

  @jax.jit
  def step(params, state, ix):
    loss, grads = jax.value_and_grad(toy.mse)(params, x[ix], y[ix])
    updates, state = tx.update(grads, state, params, value=loss)
    return optax.apply_updates(params, updates), state

  shardings0 = jax.tree.map(lambda a: a.sharding, (params, state))
  changed = 0
  counter = _CompileCounter()
  for t in range(JIT_STEPS):
    counter.active = t > 0  # the first call compiles; no later one may
    params, state = step(params, state, idx[t])
    same = jax.tree.map(lambda a, s: a.sharding.is_equivalent_to(s, a.ndim),
                        (params, state), shardings0)
    changed += sum(not s for s in jax.tree.leaves(same))
  counter.active = False
  ref_params, ref_state = _single_device_run(tx, data, idx, params0)
  ctrl = state[1].controller
  return dict(
      mesh=dict(mesh.shape),
      steps=JIT_STEPS,
      recompilations=counter.count,
      sharding_changes=changed,
      controller_replicated=all(
          a.sharding.is_fully_replicated for a in jax.tree.leaves(ctrl)),
      controller_devices=min(len(a.sharding.device_set)
                             for a in jax.tree.leaves(ctrl)),
      params_max_abs_vs_single=_max_abs(params, ref_params),
      controller_max_rel_vs_single=_max_rel(ctrl, ref_state[1].controller),
  )


def shard_map_report():
  import jax
  import numpy as np
  import optax
  import adaptive_optax as ao
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P
  from adaptive_optax import toy

  _, data, idx, params0 = _sharded_setup()
  make = lambda axis: optax.chain(
      optax.sgd(0.05, momentum=0.9),
      ao.adaptive_scale(use_cosine=True, T0=10, var_window=5, axis_name=axis))
  tx, tx1 = make("batch"), make(None)
  mesh = jax.make_mesh((N_DEVICES,), ("batch",))

  def make_local(tx):
    def local(params, state, x, y):
      shard_loss = toy.mse(params, x, y)  # differs between shards
      # The gradient of the mean loss: replicated params get all shards' terms.
      grads = jax.grad(
          lambda p: jax.lax.pmean(toy.mse(p, x, y), "batch"))(params)
      updates, state = tx.update(grads, state, params, value=shard_loss)
      return optax.apply_updates(params, updates), state
    return jax.shard_map(
        local, mesh=mesh, in_specs=(P(), P(), P("batch"), P("batch")),
        out_specs=(P(), P()))

  step = jax.jit(make_local(tx))
  rep = NamedSharding(mesh, P())
  params = jax.device_put(params0, rep)
  state = jax.device_put(_init(tx, params0), rep)
  shardings0 = jax.tree.map(lambda a: a.sharding, state)
  x, y = np.asarray(data.x), np.asarray(data.y)  # indexed in NumPy
  batches = [jax.device_put((x[ix], y[ix]),
                            NamedSharding(mesh, P("batch"))) for ix in idx]
  changed = 0
  counter = _CompileCounter()
  for t in range(JIT_STEPS):
    counter.active = t > 0
    params, state = step(params, state, *batches[t])
    same = jax.tree.map(lambda a, s: a.sharding.is_equivalent_to(s, a.ndim),
                        state, shardings0)
    changed += sum(not s for s in jax.tree.leaves(same))
  counter.active = False
  ref_params, ref_state = _single_device_run(tx1, data, idx, params0)
  # Without axis_name each shard's controller sees its own loss: the state
  # is no longer replicated and shard_map refuses out_specs=P() for it.
  try:
    jax.jit(make_local(tx1))(params, state, *batches[0])
    without_axis_error = ""
  except Exception as e:  # pylint: disable=broad-except
    without_axis_error = f"{type(e).__name__}: {str(e).splitlines()[0]}"
  return dict(
      mesh=dict(mesh.shape),
      steps=JIT_STEPS,
      recompilations=counter.count,
      without_axis_error=without_axis_error,
      sharding_changes=changed,
      params_max_abs_vs_single=_max_abs(params, ref_params),
      controller_max_rel_vs_single=_max_rel(state[1].controller,
                                            ref_state[1].controller),
  )


def main(argv):
  import jax
  if jax.device_count() != N_DEVICES:
    raise SystemExit(f"expected {N_DEVICES} devices, got {jax.device_count()}: "
                     "run with XLA_FLAGS=--xla_force_host_platform_device_count=8")
  args = [a for a in argv[1:] if not a.startswith("--inputs=")]
  _INPUTS_FILE.extend(a.split("=", 1)[1] for a in argv[1:]
                      if a.startswith("--inputs="))
  which = args or ["pmap", "named_sharding", "shard_map"]
  reports = dict(pmap=pmap_report, named_sharding=named_sharding_report,
                 shard_map=shard_map_report)
  print(json.dumps({name: reports[name]() for name in which}))


if __name__ == "__main__":
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + f" --xla_force_host_platform_device_count={N_DEVICES}")
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main(sys.argv)
