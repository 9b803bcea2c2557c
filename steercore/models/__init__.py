"""Models and how steering attaches to them: the model registry and loader, steering sites, removable hooks,
folding into linear layers, chat formats, running a model to collect statistics, and GPU assignment.

May import: steercore.core, steercore.hub, torch, diffusers and transformers (lazily where a model is loaded).
Never the experiments, stages or figures.
"""
