"""Experiments: a preset (`config/experiments/<name>.yaml`) validated and completed, its prompt sets and its
neutral corpus.

May import: steercore.core, steercore.hub, steercore.models.registry and .prompting, the testbed worlds'
vocabularies, and the method and scorer registries. Never the stages or figures.
"""
