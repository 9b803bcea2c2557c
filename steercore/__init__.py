"""steercore: steer generative models by affine edits of intermediate activations.

Fit statistics (`ActivationStats`, `collect_statistics`), build steering maps (`fit_method`, `build_plan`) and
attach them to a real model (`load_model`, `attach_steering`).

Layers, each importing only those before it: `core` (math, statistics, files; no model libraries) →
`hub`, `tables` → `models` (registry, sites, hooks, folding, chat formats, devices) → `testbed`, `scorers` →
`experiments` (presets, prompt sets, corpora) → `figures` → `stages` (one module per workflow rule).
"""

from steercore.core import __version__
from steercore.core.errors import ConfigError, FileFormatError, MissingWeightsError, ShapeMismatchError, SteerError
from steercore.core.files import load_stats, save_stats
from steercore.core.methods import (METHODS, AddVector, Method, RankOneEdit, Sequential, check_strength,
                                    fit_casteer_add, fit_casteer_remove, fit_leace, fit_method, fit_midsteer,
                                    get_method, register_method)
from steercore.core.stats import AGGREGATIONS, ActivationStats, Moments, aggregate
from steercore.core.plan import SteeringPlan, build_plan
from steercore.models.sites import find_sites
from steercore.models.hooks import attach_steering, collect_statistics
from steercore.models.registry import load_model

__all__ = [
    "__version__", "SteerError", "ConfigError", "FileFormatError", "MissingWeightsError", "ShapeMismatchError",
    "load_stats", "save_stats", "METHODS", "Method", "register_method", "get_method", "AddVector", "RankOneEdit", "Sequential", "check_strength",
    "fit_casteer_add", "fit_casteer_remove", "fit_leace", "fit_method", "fit_midsteer", "AGGREGATIONS",
    "ActivationStats", "Moments", "aggregate", "SteeringPlan", "build_plan", "find_sites", "attach_steering",
    "collect_statistics", "load_model",
]
