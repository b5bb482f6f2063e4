"""adaptive_optax.torch.AdaptiveScheduler: the seed's class, on our policy."""

import inspect
import io
import math
import subprocess
import sys

import numpy as np
import pytest

from tests import _streams

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from adaptive_optax.torch import AdaptiveScheduler  # noqa: E402
from tests.oracle import adaptive_scheduler_seed as seed  # noqa: E402
from tests.test_reference_parity import SEED_CONFIGS  # noqa: E402

N_STEPS = 400
NO_METRICS_EVERY = 97  # a bare step() (the seed's step without metrics)


def test_import_adaptive_optax_imports_neither_torch_nor_keras():
  code = ("import sys, adaptive_optax, adaptive_optax.cli; "
          "bad = sorted(m for m in sys.modules "
          "if m.split('.')[0] in ('torch', 'keras', 'tensorflow')); "
          "assert not bad, bad")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]


def test_constructor_is_the_seeds_plus_mode():
  ours = inspect.signature(AdaptiveScheduler).parameters
  theirs = inspect.signature(seed.AdaptiveScheduler).parameters
  for name, p in theirs.items():
    assert name in ours, name
    assert ours[name].default == p.default, name
    assert ours[name].kind == p.kind, name
  assert ours["mode"].default == "stable"
  assert ours["mode"].kind == inspect.Parameter.KEYWORD_ONLY


def drive(cls, config, losses, rewards, make_opt, **kw):
  """The seed's loop on a fixed stream; (LR, momentum) of every group per step."""
  opt = make_opt()
  sched = cls(opt, **config, **kw)
  out = []
  for t, loss in enumerate(losses):
    if t % NO_METRICS_EVERY == NO_METRICS_EVERY - 1:
      sched.step()
    else:
      r = None if rewards is None else float(rewards[t])
      # A 0-d tensor every other step: both readings must agree.
      sched.step_loss(torch.tensor(loss) if t % 2 else float(loss), reward=r)
    out.append([[g["lr"], g.get("momentum", math.nan)]
                for g in opt.param_groups])
  return np.array(out)


def sgd(lrs=(0.05,), momentum=0.9):
  def make():
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr}
              for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0], momentum=momentum)
  return make


@pytest.mark.parametrize("kind", _streams.KINDS)
@pytest.mark.parametrize("name", sorted(SEED_CONFIGS))
def test_reference_mode_writes_the_seeds_lr_and_momentum(name, kind):
  config = SEED_CONFIGS[name]
  losses = _streams.loss_stream(kind, N_STEPS, seed=len(name))
  rewards = (_streams.reward_stream(N_STEPS) if config.get("use_reward")
             else None)
  got = drive(AdaptiveScheduler, config, losses, rewards, sgd(),
              mode="reference")
  want = drive(seed.AdaptiveScheduler, config, losses, rewards, sgd())
  np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)


def test_one_controller_per_param_group():
  config = SEED_CONFIGS["everything"]
  losses = _streams.loss_stream("trend", 300)
  rewards = _streams.reward_stream(300)
  make = sgd(lrs=(0.05, 0.01, 0.2), momentum=0.7)
  got = drive(AdaptiveScheduler, config, losses, rewards, make,
              mode="reference")
  want = drive(seed.AdaptiveScheduler, config, losses, rewards, make)
  np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)


@pytest.mark.parametrize("mode", ["stable", "reference"])
def test_momentum_only_where_the_group_has_it(mode):
  w = torch.nn.Parameter(torch.zeros(2))
  opt = torch.optim.Adam([w], lr=0.01, betas=(0.8, 0.9))
  sched = AdaptiveScheduler(opt, mode=mode, use_reward=True)
  for t in range(60):
    sched.step_loss(1.0 / (t + 1), reward=float(t % 3))
  g = opt.param_groups[0]
  assert "momentum" not in g
  assert g["betas"] == (0.8, 0.9)
  assert g["lr"] == sched.get_last_lr()[0] != 0.01

  opt = torch.optim.RMSprop([w], lr=0.01, momentum=0.5)
  sched = AdaptiveScheduler(opt, mode=mode, use_reward=True, var_window=5)
  rewards = np.arange(60.0)  # rising: the reward rule raises momentum
  for t in range(60):
    sched.step_loss(1.0 / (t + 1), reward=rewards[t])
  assert opt.param_groups[0]["momentum"] > 0.5


@pytest.mark.parametrize("mode", ["stable", "reference"])
def test_state_dict_round_trip_resumes_exactly(mode):
  config = dict(SEED_CONFIGS["everything"], mode=mode)
  losses = _streams.loss_stream("noisy", 200)
  rewards = _streams.reward_stream(200)
  opt = sgd()()
  sched = AdaptiveScheduler(opt, **config)
  for t in range(100):
    sched.step_loss(losses[t], reward=rewards[t])
  buf = io.BytesIO()
  torch.save({"sched": sched.state_dict(), "opt": opt.state_dict()}, buf)
  buf.seek(0)
  ckpt = torch.load(buf, weights_only=True)  # tensors and plain types only

  opt2 = sgd()()
  sched2 = AdaptiveScheduler(opt2, mode=mode)  # options come from the ckpt
  sched2.load_state_dict(ckpt["sched"])
  assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
  assert sched2.last_epoch == sched.last_epoch
  resumed = []
  for t in range(100, 200):
    sched2.step_loss(losses[t], reward=rewards[t])
    g = opt2.param_groups[0]
    resumed.append([[g["lr"], g["momentum"]]])
  # The same stream without interruption.
  opt3 = sgd()()
  sched3 = AdaptiveScheduler(opt3, **config)
  straight = []
  for t in range(200):
    sched3.step_loss(losses[t], reward=rewards[t])
    straight.append([[opt3.param_groups[0]["lr"],
                      opt3.param_groups[0]["momentum"]]])
  np.testing.assert_array_equal(np.array(resumed), np.array(straight)[100:])


def test_load_state_dict_refuses_another_number_of_groups():
  sched = AdaptiveScheduler(sgd(lrs=(0.1, 0.2))())
  with pytest.raises(ValueError, match="2 controllers but the optimizer has 1"):
    AdaptiveScheduler(sgd()()).load_state_dict(sched.state_dict())


def test_nonfinite_loss_is_a_step_without_metrics():
  opt = sgd()()
  sched = AdaptiveScheduler(opt, mode="reference")
  for loss in [1.0, 0.9, float("nan"), torch.tensor(float("inf")), 0.8]:
    sched.step_loss(loss)
  assert math.isfinite(opt.param_groups[0]["lr"])


def test_tensor_learning_rate_is_written_in_place():
  w = torch.nn.Parameter(torch.zeros(2))
  opt = torch.optim.SGD([w], lr=torch.tensor(0.05), momentum=0.9)
  lr_tensor = opt.param_groups[0]["lr"]
  sched = AdaptiveScheduler(opt, mode="reference")
  sched.step_loss(1.0)
  sched.step_loss(0.5)
  assert opt.param_groups[0]["lr"] is lr_tensor
  assert float(lr_tensor) == pytest.approx(sched.get_lr()[0], rel=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr_min=1.0, lr_max=0.1), "lr_min must not exceed lr_max"),
    (dict(mode="fast"), "mode must be one of"),
    (dict(var_window=0), "var_window"),
    (dict(loss_beta=1.5), "loss_beta"),
])
def test_bad_hyperparameters_are_refused_at_construction(kwargs, match):
  with pytest.raises(ValueError, match=match):
    AdaptiveScheduler(sgd()(), **kwargs)


def test_bad_group_and_loss_are_refused():
  with pytest.raises(ValueError, match=r"param_groups\[1\] learning rate"):
    AdaptiveScheduler(sgd(lrs=(0.1, -0.1))())
  sched = AdaptiveScheduler(sgd()())
  with pytest.raises(ValueError, match="loss must be a scalar"):
    sched.step_loss(torch.ones(3))
  with pytest.raises(TypeError, match="takes no epoch"):
    sched.step(3)


# ---------------------------------------------------------------------------
# The seed's demo (its main(), verbatim but for the scheduler and the epochs).

SEED_DEMO = SEED_CONFIGS["demo"]


def make_toy_dataset(n=512):
  torch.manual_seed(0)
  X = torch.randn(n, 10)
  true_w = torch.randn(10, 1)
  y = X @ true_w + 0.1 * torch.randn(n, 1)
  return TensorDataset(X, y)


def seed_main(epochs, make_scheduler):
  """The seed's main(); returns the full-data MSE after training."""
  ds = make_toy_dataset()
  loader = DataLoader(ds, batch_size=64, shuffle=True)
  model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 1))
  optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
  scheduler = make_scheduler(optimizer)
  for _ in range(epochs):
    for X, y in loader:
      optimizer.zero_grad()
      loss = F.mse_loss(model(X), y)
      loss.backward()
      optimizer.step()
      if scheduler is not None:
        scheduler.step_loss(loss)
  with torch.no_grad():
    return F.mse_loss(model(ds.tensors[0]), ds.tensors[1]).item()


@pytest.mark.parametrize("epochs", [
    # Known miss: the cautious start (start_scale=0.1, up to the given rate
    # over the first 20-loss window) keeps the LR below 0.05 for most of the
    # 40 steps: full-data MSE 0.151 vs 0.068. start_scale=0.5 passes here
    # (0.063) but is worse on the tune tasks from 10x too high (seed_demo
    # diverges) and from the good start (digits_adam 1.23 -> 1.43):
    # benchmarks/results/tune_start_scale.md, rerun at the current policy.
    # strict: once the policy passes, this fails until the mark is removed.
    pytest.param(5, marks=pytest.mark.xfail(
        strict=True, reason="stable mode's cautious start is slower than a "
        "fixed LR over the demo's first 40 steps")),
    40])
def test_default_mode_trains_the_seed_demo_as_well_as_fixed_lr(epochs):
  torch.set_num_threads(1)  # same arithmetic order in both runs
  fixed = seed_main(epochs, lambda opt: None)
  ours = seed_main(epochs, lambda opt: AdaptiveScheduler(opt, **SEED_DEMO))
  assert ours <= fixed, (ours, fixed)
