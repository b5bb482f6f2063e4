"""Data-parallel training of the demo MLP across processes on one machine.

Each process is one JAX host with one CPU device; ``jax.distributed``
connects them over 127.0.0.1 and gloo carries the collectives. Every process
feeds its own half of each batch, so its local loss differs; the controller
(``axis_name="batch"``) averages the loss across processes.

Run one process per id, and the single-process reference run on whole
batches (tests/test_distributed.py starts all three at once)::

  python tests/multihost/data_parallel.py PORT NUM_PROCESSES PROCESS_ID OUT.npz [BATCHES.npz]
  python tests/multihost/data_parallel.py reference OUT.npz [BATCHES.npz]

BATCHES.npz (written by save_batches) holds the batches, so that the
processes read them instead of each generating them (compiling the data's
generation takes a few seconds per process); without it, each generates them.
"""

import sys

STEPS = 60
BATCH = 64


def make_tx(axis_name):
  import optax
  import adaptive_optax as ao
  return ao.adaptive_hyperparams(
      optax.sgd, learning_rate=0.05, momentum=0.9, use_cosine=True, T0=10,
      var_window=5, patience=5, cooldown=5, axis_name=axis_name)


def _batches(path=None):
  """(xs, ys), the batches of every step, (T, B, ...): read from ``path``
  when given, else generated."""
  import jax
  import numpy as np
  from adaptive_optax import toy
  if path:
    with np.load(path) as f:
      return f["xs"], f["ys"]
  data = toy.make_toy_dataset()
  idx = np.asarray(toy.batch_indices(jax.random.PRNGKey(1), STEPS))
  return np.asarray(data.x)[idx], np.asarray(data.y)[idx]  # (T, B, ...)


def save_batches(path):
  """Writes the batches to ``path`` (.npz), for the processes to read."""
  import numpy as np
  xs, ys = _batches()
  np.savez(path, xs=xs, ys=ys)


def _flat(params, state):
  """The final parameters and controller state as named numpy arrays."""
  import jax
  import numpy as np
  leaves = jax.tree_util.tree_flatten_with_path(
      (params, state.controller.unpack()))[0]
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}


def reference(batches=None):
  """The same training in one process, on one device, on whole batches."""
  import jax
  import optax
  from adaptive_optax import toy
  tx = make_tx(None)
  xs, ys = _batches(batches)

  @jax.jit
  def run(xs, ys):
    params = toy.init_mlp(jax.random.PRNGKey(0))
    def body(carry, batch):
      params, state = carry
      loss, grads = jax.value_and_grad(toy.mse)(params, *batch)
      updates, state = tx.update(grads, state, params, value=loss)
      return (optax.apply_updates(params, updates), state), None
    return jax.lax.scan(body, (params, tx.init(params)), (xs, ys))[0]

  return _flat(*run(xs, ys))


def worker(port, num_processes, process_id, batches=None):
  import jax
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
      process_id=process_id, initialization_timeout=60)
  import numpy as np
  import optax
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P
  from adaptive_optax import toy

  assert jax.process_count() == num_processes
  mesh = jax.make_mesh((jax.device_count(),), ("batch",))
  rep, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("batch"))
  tx = make_tx("batch")

  def local(params, state, x, y):
    shard_loss = toy.mse(params, x, y)
    grads = jax.grad(lambda p: jax.lax.pmean(toy.mse(p, x, y), "batch"))(params)
    updates, state = tx.update(grads, state, params, value=shard_loss)
    return optax.apply_updates(params, updates), state

  step = jax.jit(jax.shard_map(
      local, mesh=mesh, in_specs=(P(), P(), P("batch"), P("batch")),
      out_specs=(P(), P())))
  params = jax.jit(lambda: toy.init_mlp(jax.random.PRNGKey(0)),
                   out_shardings=rep)()
  state = jax.jit(tx.init, out_shardings=rep)(params)

  xs, ys = _batches(batches)
  rows = BATCH // num_processes
  mine = slice(process_id * rows, (process_id + 1) * rows)
  for t in range(STEPS):
    x = jax.make_array_from_process_local_data(split, xs[t, mine])
    y = jax.make_array_from_process_local_data(split, ys[t, mine])
    params, state = step(params, state, x, y)
  local_copy = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)),
                            (params, state))
  out = _flat(*local_copy)
  jax.distributed.shutdown()
  return out


def main(argv):
  import numpy as np
  if argv[1] == "reference":
    out, *batches = argv[2:]
    result = reference(*batches)
  else:
    port, num_processes, process_id, out, *batches = argv[1:]
    result = worker(int(port), int(num_processes), int(process_id), *batches)
  np.savez(out, **result)


if __name__ == "__main__":
  main(sys.argv)
