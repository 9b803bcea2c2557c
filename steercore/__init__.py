"""steercore: steer generative models by affine edits of intermediate activations.

Fit statistics (`ActivationStats`), build a steering map (`fit_method`), attach it to a model.
"""

__version__ = "0.1.0"

from .errors import ConfigError, FileFormatError, MissingWeightsError, ShapeMismatchError, SteerError
from .files import load_stats, save_stats
from .methods import (METHODS, AddVector, RankOneEdit, Sequential, check_strength, fit_casteer_add,
                      fit_casteer_remove, fit_leace, fit_method, fit_midsteer)
from .stats import AGGREGATIONS, ActivationStats, Moments, aggregate

__all__ = [
    "__version__", "SteerError", "ConfigError", "FileFormatError", "MissingWeightsError", "ShapeMismatchError",
    "load_stats", "save_stats", "METHODS", "AddVector", "RankOneEdit", "Sequential", "check_strength",
    "fit_casteer_add", "fit_casteer_remove", "fit_leace", "fit_method", "fit_midsteer", "AGGREGATIONS",
    "ActivationStats", "Moments", "aggregate",
]
