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

__version__ = "0.1.0"

__all__ = (
    "AdaptiveHyperparamsState",
    "AdaptiveScaleState",
    "ControllerState",
    "adaptive_hyperparams",
    "adaptive_scale",
    "metrics",
    "simulate",
)
