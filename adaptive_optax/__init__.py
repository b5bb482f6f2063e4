"""adaptive_optax: a loss-driven learning-rate (and momentum) controller for Optax.

A JAX port of the ``AdaptiveScheduler`` PyTorch scheduler, as pure optax
gradient transformations whose state is a jittable, vmappable pytree.
"""

from adaptive_optax._metrics import metrics
from adaptive_optax._policy import ControllerState
from adaptive_optax._simulate import simulate
from adaptive_optax._transform import AdaptiveHyperparamsState
from adaptive_optax._transform import AdaptiveScaleState
from adaptive_optax._transform import adaptive_hyperparams
from adaptive_optax._transform import adaptive_scale
from adaptive_optax import logging  # tensorboardX is imported on first use
from adaptive_optax import presets
from adaptive_optax.config import load_config
from adaptive_optax.config import save_config
from adaptive_optax._serialization import controller_configs
from adaptive_optax._serialization import restore_state
from adaptive_optax._serialization import state_from_bytes
from adaptive_optax._serialization import state_to_bytes

__version__ = "0.1.0"

__all__ = (
    "AdaptiveHyperparamsState",
    "AdaptiveScaleState",
    "ControllerState",
    "adaptive_hyperparams",
    "adaptive_scale",
    "controller_configs",
    "load_config",
    "logging",
    "metrics",
    "presets",
    "restore_state",
    "save_config",
    "simulate",
    "state_from_bytes",
    "state_to_bytes",
)
