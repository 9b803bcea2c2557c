"""Prompt sets: the texts a stage feeds to a model, resolved from an experiment's config deterministically.

A prompt set is a list of literal prompts, a file (one prompt per line, "{}" replaced by the concept's word,
lines starting with "#" skipped), or a testbed generator. Neutral corpora for the cov stage are in
`steercore.experiments.corpora`.
"""

from __future__ import annotations

from pathlib import Path

from steercore.core.errors import ConfigError
from steercore.experiments.preset import ROOT, Experiment


def read_lines(path: Path, what: str | None = None) -> list[str]:
    """The prompts of a prompt file: its non-blank lines that are not "#" comments. A missing, non-UTF-8,
    empty or comment-only file is one ConfigError naming it (`what`, default the path)."""
    what = what or f"prompt file {path}"
    if not path.is_file():
        raise ConfigError(f"{what} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise ConfigError(f"{what} is not UTF-8 text (line {line}, byte {e.start}); save it as UTF-8") from None
    lines = [ln.strip() for ln in text.splitlines()]
    prompts = [ln for ln in lines if ln and not ln.startswith("#")]
    if not prompts:
        raise ConfigError(f"{what} holds no prompts (only blank or # comment lines); add one prompt per line")
    return prompts


def resolve(spec, concept: str, word: str, *, seed: int = 0, root: Path = ROOT) -> list[str]:
    """The prompts of one prompt set for `concept` (whose word fills "{}" in prompt files)."""
    if isinstance(spec, list):
        return [p.replace("{}", word) for p in spec]
    if "file" in spec:
        lines = [ln.replace("{}", word) for ln in read_lines(root / spec["file"])]
        return lines[: spec.get("limit", len(lines))]
    n = spec.get("n", 8)
    if spec["generator"] == "testbed-shapes":
        from steercore.testbed.shapes import concept_captions

        return concept_captions(word, n, seed)
    if spec["generator"] == "testbed-topics":
        from steercore.testbed.topics import topic_questions

        return topic_questions(word, n, seed)
    raise ConfigError(f"unknown prompt generator '{spec['generator']}'")


def eval_prompts(exp: Experiment, concept: str) -> list[str]:
    """Test prompts of one concept of the experiment (source, target or an unrelated one)."""
    p = exp["prompts"]
    role = "source" if concept == exp["source"] else "target" if concept == exp["target"] else None
    key = (role,) if role else ("unrelated" if concept in p["unrelated"] else "extra", concept)
    spec = p[key[0]] if role else p[key[0]][concept]
    return resolve(spec, concept, exp.word(concept), seed=exp["seed"], root=exp.root_of("prompts", *key))


def vector_prompts(exp: Experiment, concept: str) -> list[str]:
    """Prompts whose activations average to the concept's mean vector, cycled up to vectors.samples."""
    prompts = resolve(_sized(exp.vector_prompts, exp["vectors"]["samples"]), concept, exp.word(concept),
                      seed=exp["seed"], root=exp.root_of("vectors", "prompts"))
    n = exp["vectors"]["samples"]
    return [prompts[i % len(prompts)] for i in range(n)]


def _sized(spec, n: int):
    """A generator spec asks for exactly n prompts; lists and files are cycled by the caller."""
    return {**spec, "n": n} if isinstance(spec, dict) and "generator" in spec else spec
