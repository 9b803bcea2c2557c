"""steercore: steer generative models by affine edits of intermediate activations.

Fit statistics (`ActivationStats`, `collect_statistics`), build steering maps (`fit_method`, `build_plan`) and
attach them to a real model (`load_model`, `attach_steering`).
"""

__version__ = "0.1.0"

from .errors import ConfigError, FileFormatError, MissingWeightsError, ShapeMismatchError, SteerError
from .files import load_stats, save_stats
from .methods import (METHODS, AddVector, RankOneEdit, Sequential, check_strength, fit_casteer_add,
                      fit_casteer_remove, fit_leace, fit_method, fit_midsteer)
from .stats import AGGREGATIONS, ActivationStats, Moments, aggregate
from .plan import SteeringPlan, build_plan
from .sites import find_sites
from .hooks import attach_steering, collect_statistics
from .registry import load_model

__all__ = [
    "__version__", "SteerError", "ConfigError", "FileFormatError", "MissingWeightsError", "ShapeMismatchError",
    "load_stats", "save_stats", "METHODS", "AddVector", "RankOneEdit", "Sequential", "check_strength",
    "fit_casteer_add", "fit_casteer_remove", "fit_leace", "fit_method", "fit_midsteer", "AGGREGATIONS",
    "ActivationStats", "Moments", "aggregate", "SteeringPlan", "build_plan", "find_sites", "attach_steering",
    "collect_statistics", "load_model",
]
