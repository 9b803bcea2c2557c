"""Experiments: loading and validating `config/experiments/<name>.yaml`, and everything derived from one.

An experiment is one model, one concept switch (source → target) or erasure (source), several methods and
strengths, and test prompts for the source, target and unrelated concepts. The JSON schema
(`config/experiment.schema.yaml`) rejects unknown keys and wrong types and fills defaults; `load_experiment`
adds the checks a schema cannot make (known model, prompt files exist, target given for a switch) and turns
every mistake into one `ConfigError` line that names the file and the key.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

from steercore.core.errors import ConfigError
from steercore.core.methods import METHODS, get_method



def find_root() -> Path:
    """The workflow directory whose config/ and results/ are used: the working directory when it holds
    config/experiments (Snakemake runs jobs there, also in a copy of the workflow), else this repository."""
    here = Path.cwd()
    return here if (here / "config" / "experiments").is_dir() else Path(__file__).resolve().parents[2]


ROOT = find_root()
SCHEMA = ROOT / "config" / "experiment.schema.yaml"
BASELINE = ("none", 0.0)

# The neutral corpus, concept-vector prompts and scorers a model family uses unless the experiment says otherwise.
DEFAULTS_BY_KIND = {
    "t2i": {"corpus": "relaion", "vector_prompts": {"file": "config/prompts/t2i_concept.txt"},
            "concept_scorer": "clip", "preservation": "fid"},
    "lm": {"corpus": "alpaca", "vector_prompts": {"file": "config/prompts/llm_concept.txt"},
           "concept_scorer": "judge", "preservation": "consistency"},
}
TESTBED_DEFAULTS = {
    "testbed-t2i": {"corpus": "testbed-shapes", "vector_prompts": {"generator": "testbed-shapes", "n": 200},
                    "concept_scorer": "testbed-clip", "preservation": "fid"},
    "testbed-lm": {"corpus": "testbed-topics", "vector_prompts": {"generator": "testbed-topics", "n": 200},
                   "concept_scorer": "testbed-topics", "preservation": "consistency"},
}


def _extend_with_defaults(cls):
    """A jsonschema validator class that also writes each property's `default` into the instance."""
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = json.loads(json.dumps(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})


_Validator = _extend_with_defaults(jsonschema.Draft202012Validator)


def _non_finite(data, path=()) -> list[str]:
    """Keys whose value is a NaN or ±inf float (YAML .nan/.inf): a JSON schema's `minimum` lets them through."""
    if isinstance(data, float) and not math.isfinite(data):
        return [f"{'.'.join(map(str, path)) or '(top level)'}: {data} is not a finite number"]
    if isinstance(data, dict):
        return [m for k, v in data.items() for m in _non_finite(v, (*path, k))]
    if isinstance(data, list):
        return [m for i, v in enumerate(data) for m in _non_finite(v, (*path, i))]
    return []


def _describe(e: jsonschema.ValidationError) -> str:
    """One line for one schema error: the key, then what is wrong in plain words (no schema dump)."""
    key = ".".join(str(p) for p in e.absolute_path) or "(top level)"
    if e.validator == "oneOf" and isinstance(e.instance, dict):
        msg = "expected a list of prompts, {file: path} or {generator: testbed-shapes|testbed-topics}"
    elif e.validator == "enum":
        msg = f"{e.instance!r} is not allowed; choose one of {', '.join(map(str, e.validator_value))}"
    elif e.validator == "pattern" and e.validator_value == NAME.pattern:
        msg = f"{e.instance!r} may contain only letters, digits and _"
    else:
        msg = e.message
    return f"{key}: {' '.join(str(msg).split())[:300]}"


def config_errors(data: dict, schema: dict) -> list[str]:
    """Every mistake of `data` against `schema` (and every non-finite number), one line each, in key order;
    fills defaults in place."""
    errors = sorted(_Validator(schema).iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    non_finite = _non_finite(data)
    said = {m.split(": ")[0] for m in non_finite}  # one line per mistake: not also "nan is not an integer"
    return non_finite + [d for d in map(_describe, errors) if d.split(": ")[0] not in said]


def validate(data: dict, schema: dict, where: str) -> dict:
    """Validate `data` against `schema`, filling defaults in place; raise one ConfigError line (the first mistake)."""
    errors = config_errors(data, schema)
    if errors:
        raise ConfigError(f"{where}: {errors[0]}")
    return data


@lru_cache(maxsize=None)
def _schema_file() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def schema() -> dict:
    """The experiment schema, its method and scorer enums taken from the code's registries (the file lists
    the built-in names for readers; a method registered at run time is accepted too)."""
    from steercore.scorers.registry import CONCEPT_SCORERS

    s = json.loads(json.dumps(_schema_file()))
    s["properties"]["methods"]["items"]["enum"] = list(METHODS)
    s["$defs"]["scorer"]["enum"] = ["auto", *CONCEPT_SCORERS]
    return s


@dataclass(frozen=True)
class Condition:
    """One steering condition of an experiment; the baseline is method 'none' at strength 0."""

    method: str
    strength: float

    @property
    def label(self) -> str:
        """Directory name: 'midsteer-2', 'casteer-1.5', 'none-0'."""
        return f"{self.method}-{self.strength:g}"

    @classmethod
    def parse(cls, label: str) -> "Condition":
        method, _, strength = label.rpartition("-")
        return cls(method, float(strength))


@dataclass(frozen=True)
class Experiment:
    """A validated experiment with defaults filled in. `cfg` is the full dict; properties derive from it."""

    name: str
    cfg: dict

    def __getitem__(self, key):
        return self.cfg[key]

    @property
    def model_kind(self) -> str:
        from steercore.models.registry import resolve_spec

        return resolve_spec(self.cfg["model"]).kind

    @property
    def stats_model(self) -> str:
        return self.cfg["stats_model"] or self.cfg["model"]

    def _default(self, key: str):
        return TESTBED_DEFAULTS.get(self.cfg["model"], DEFAULTS_BY_KIND[self.model_kind])[key]

    @property
    def corpus(self) -> str:
        c = self.cfg["cov"]["corpus"]
        return self._default("corpus") if c == "auto" else c

    @property
    def vector_prompts(self):
        return self.cfg["vectors"].get("prompts") or self._default("vector_prompts")

    @property
    def concept_scorer(self) -> str:
        """The scorer of the source concept (see concept_scorer_for)."""
        return self.concept_scorer_for(self.cfg["source"])

    def concept_scorer_for(self, concept: str) -> str:
        """scorers.concept is one scorer name, or a mapping concept → name with an optional 'default'."""
        c = self.cfg["scorers"]["concept"]
        if isinstance(c, dict):
            c = c.get(concept, c.get("default", "auto"))
        return self._default("concept_scorer") if c == "auto" else c

    @property
    def preservation_metric(self) -> str:
        """The preservation column the Pareto x axis reads (bertscore → its precision, as in the paper)."""
        return "bert_precision" if self.preservation == "bertscore" else self.preservation

    @property
    def preservation(self) -> str:
        p = self.cfg["scorers"]["preservation"]
        return self._default("preservation") if p == "auto" else p

    @property
    def concepts(self) -> list[str]:
        """Concepts whose vectors are needed: the source, and the target of a switch."""
        return [self.cfg["source"]] + ([self.cfg["target"]] if self.cfg["kind"] == "switch" else [])

    @property
    def test_concepts(self) -> list[str]:
        """Prompt sets generated and scored: source, target (if given), then the unrelated concepts."""
        p = self.cfg["prompts"]
        out = ["source"] + (["target"] if "target" in p else []) + list(p.get("unrelated", {})) + list(p.get("extra", {}))
        return [self.concept_name(c) for c in out]

    def concept_name(self, role: str) -> str:
        return {"source": self.cfg["source"], "target": self.cfg["target"]}.get(role, role)

    def word(self, concept: str) -> str:
        return self.cfg["words"].get(concept, concept)

    @property
    def conditions(self) -> list[Condition]:
        """The baseline first, then every method × strength."""
        return [Condition(*BASELINE)] + [Condition(m, float(s)) for m in self.cfg["methods"]
                                         for s in self.cfg["strengths"]]

    def cov_id(self, shard: int | None = None, shards: int | None = None) -> str:
        """Identifies a neutral-statistics file: corpus, sample count, aggregation, steps, site kind."""
        c = self.cfg["cov"]
        parts = [self.corpus.replace(":", "_").replace("/", "_"), f"n{c['samples']}", c["aggregation"],
                 "perstep" if c["per_step"] else "step0"]
        if self.model_kind == "lm":
            parts.append(self.cfg["llm_site"])
        return "_".join(parts)

    def vectors_id(self) -> str:
        """Identifies concept-mean files: prompts, sample count, aggregation, steps, site kind (short hash)."""
        v = self.cfg["vectors"]
        key = json.dumps([self.vector_prompts, v["samples"], v["aggregation"], self.cfg["cov"]["per_step"],
                          self.cfg["llm_site"] if self.model_kind == "lm" else None, self.cfg["steps"],
                          self.cfg["seed"]], sort_keys=True)
        return hashlib.sha1(key.encode()).hexdigest()[:8]


    # ---- where this experiment's files live (the rules and the scripts both ask here)

    @property
    def stats_dir(self) -> str:
        """The statistics model as one path component (a local folder becomes its basename)."""
        name = self.stats_model
        return Path(name).name if Path(name).is_dir() else name

    @property
    def needs_cov(self) -> bool:
        return any(get_method(m).needs_neutral for m in self.cfg["methods"])

    def cov_path(self) -> str:
        return f"results/cov/{self.stats_dir}/{self.cov_id()}.safetensors"

    def vectors_path(self, concept: str) -> str:
        return f"results/vectors/{self.stats_dir}/{self.vectors_id()}/{concept}.safetensors"

    # ---- the job grain (issue 12): which conditions share a job, and what each job's outputs depend on

    def packs(self, override: str = "auto") -> bool:
        """Whether all strengths of a method run in one job (one batch, per-sample strengths).

        override: config.yaml `pack` (auto, true, false); auto takes the preset's `pack`, whose default (null)
        packs the testbed and runs paper models one condition per job."""
        if override != "auto":
            return override in (True, "true")
        if self.cfg.get("pack") is not None:
            return bool(self.cfg["pack"])
        return self.cfg["model"].startswith("testbed-")

    def job_units(self, override: str = "auto") -> dict[str, list[Condition]]:
        """Job label → its conditions, in condition order. One condition per job (label = condition label),
        or packed: the baseline alone and `{method}-all` for every strength of a method."""
        if not self.packs(override):
            return {c.label: [c] for c in self.conditions}
        units: dict[str, list[Condition]] = {}
        for c in self.conditions:
            units.setdefault(c.label if c.method == "none" else f"{c.method}-all", []).append(c)
        return units

    def generation_settings(self, cond: Condition) -> dict:
        """Every resolved setting the outputs of `cond` depend on: the preset after defaults (less what only
        steers, scores or schedules), the model spec, the resolved steps/guidance, the text of every prompt
        set and, for a steered condition, the method, strength and statistics files."""
        from dataclasses import asdict

        from steercore.experiments.promptsets import eval_prompts
        from steercore.models.registry import resolve_spec

        spec = resolve_spec(self.cfg["model"])
        skip = set(_NOT_GENERATION) | (set() if cond.method != "none" else set(_STEERING_ONLY))
        out = {k: v for k, v in sorted(self.cfg.items()) if k not in skip}
        out["model_spec"] = asdict(spec)
        out["resolved"] = {"steps": self.cfg["steps"] or spec.steps,
                           "guidance": spec.guidance if self.cfg["guidance"] is None else self.cfg["guidance"]}
        out["prompt_text"] = {c: eval_prompts(self, c) for c in self.test_concepts}
        if cond.method != "none":
            stats = [self.vectors_path(c) for c in self.concepts]
            if get_method(cond.method).needs_neutral:
                stats.append(self.cov_path())
            out.update(method=cond.method, strength=cond.strength, statistics=stats)
        return out

    def generation_digest(self, cond: Condition) -> str:
        """Short hash of generation_settings: a condition folder made under another digest is never reused."""
        return _digest(self.generation_settings(cond))

    def scoring_digest(self, cond: Condition) -> str:
        """What the scores of `cond` depend on: its outputs and the baseline's (their generation digests, from
        `outputs_from` when set), the scorers, the words, the concepts scored, the Pareto-free preset keys."""
        gen = load_experiment(self.cfg["outputs_from"]) if self.cfg["outputs_from"] else self
        base = Condition(*BASELINE)
        return _digest({"outputs": gen.generation_digest(cond), "baseline": gen.generation_digest(base),
                        "scorers": self.cfg["scorers"], "preservation": self.preservation,
                        "concept_scorers": {c: self.concept_scorer_for(c) for c in self.test_concepts},
                        "words": self.cfg["words"], "source": self.cfg["source"], "target": self.cfg["target"],
                        "kind": self.cfg["kind"], "test_concepts": self.test_concepts})


# Preset keys no generated output depends on (scheduling, scoring, plotting, statistics: their files are
# named by their own ids and listed in generation_settings); and those only a steered condition reads.
_NOT_GENERATION = ("description", "methods", "strengths", "batch_size", "scorers", "pareto", "outputs_from", "pack",
                   "cov", "vectors", "stats_model")
_STEERING_ONLY = ("kind", "identity_cov", "clip", "renormalize", "zero_mu", "only_up", "generated_only", "llm_site")


def _digest(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def experiment_path(name: str, root: Path = ROOT) -> Path:
    return root / "config" / "experiments" / f"{name}.yaml"


NAME = re.compile(r"^[A-Za-z0-9_]+$")  # experiment names become wildcards, paths and job arguments


def check_name(name: str, where: str) -> str:
    if not NAME.match(name):
        raise ConfigError(f"{where}: experiment name {name!r} may contain only letters, digits and _ "
                          "(no spaces, hyphens or dots); rename the file")
    return name


def list_experiments(root: Path = ROOT) -> list[str]:
    """The preset names in config/experiments/; a file whose name cannot be a preset name stops here."""
    folder = root / "config" / "experiments"
    for p in sorted(folder.glob("*.yml")):
        raise ConfigError(f"config/experiments/{p.name}: presets end in .yaml; rename it to {p.stem}.yaml")
    return sorted(check_name(p.stem, f"config/experiments/{p.name}") for p in folder.glob("*.yaml"))


def load_experiment(name_or_path: str | Path, root: Path = ROOT) -> Experiment:
    """Load, validate and complete an experiment by preset name or path; one ConfigError line on any mistake."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = experiment_path(str(name_or_path), root)
        if not path.is_file():
            raise ConfigError(f"unknown experiment '{name_or_path}'; presets: {', '.join(list_experiments(root))}")
    where = str(path.relative_to(root)) if path.is_absolute() and path.is_relative_to(root) else str(path)
    check_name(path.stem, where)
    cfg = read_yaml(path, where)
    validate(cfg, schema(), where)
    exp = Experiment(path.stem, cfg)
    _check_semantics(exp, where, root)
    return exp


def read_yaml(path: Path, where: str) -> dict:
    """A YAML mapping, or one ConfigError line with the line and column of a syntax error."""
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{where}: {at}not valid YAML ({e.problem or e.context})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{where}: cannot read it as YAML ({(str(e).splitlines() or [type(e).__name__])[0]})") from None
    if cfg is None:
        raise ConfigError(f"{where}: the file is empty; an experiment needs at least model, kind, source, "
                          "methods, strengths and prompts")
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(cfg).__name__}")
    return cfg


def _check_semantics(exp: Experiment, where: str, root: Path) -> None:
    from steercore.models.registry import MODELS, model_spec

    cfg = exp.cfg
    for key in ("model", "stats_model"):
        name = cfg[key]
        if name is None or Path(name).is_dir():
            continue
        try:
            model_spec(name)
        except ConfigError:
            raise ConfigError(f"{where}: {key}: unknown model '{name}'; choose one of {', '.join(MODELS)} "
                              "or give a local model folder") from None
    if cfg["outputs_from"]:
        other = load_experiment(cfg["outputs_from"], root)
        same = ("model", "kind", "source", "target", "methods", "strengths", "prompts", "samples_per_prompt", "seed")
        diff = [k for k in same if other.cfg[k] != cfg[k]]
        if diff:
            raise ConfigError(f"{where}: outputs_from: experiment '{cfg['outputs_from']}' differs in {', '.join(diff)}; "
                              "it must have generated exactly what this experiment scores")
    if cfg["kind"] == "switch" and not cfg["target"]:
        raise ConfigError(f"{where}: target: a switch experiment needs a target concept")
    if cfg["target"] is not None and (cfg["target"] == cfg["source"] or exp.word(cfg["target"]) == exp.word(cfg["source"])):
        raise ConfigError(f"{where}: target: '{cfg['target']}' is the source concept too; steering a concept "
                          "onto itself does nothing; choose another target")
    if cfg["kind"] == "erase" and cfg["target"]:
        raise ConfigError(f"{where}: target: an erase experiment has no target (it steers towards the neutral mean)")
    if cfg["kind"] == "erase":
        switch_only = [m for m in cfg["methods"] if get_method(m).needs_target]
        if switch_only:
            erasers = [m for m in METHODS if not get_method(m).needs_target]
            raise ConfigError(f"{where}: methods: {switch_only[0]} needs a target; use {', '.join(erasers)} to erase")
    if cfg["kind"] == "switch" and "target" not in cfg["prompts"]:
        raise ConfigError(f"{where}: prompts.target: a switch experiment needs target prompts (for the goal line)")
    sets = {"vectors.prompts": exp.vector_prompts, **{f"prompts.{k}": v for k, v in cfg["prompts"].items()
                                                        if k in ("source", "target")},
            **{f"prompts.{group}.{k}": v for group in ("unrelated", "extra")
               for k, v in cfg["prompts"].get(group, {}).items()}}
    for key, spec in sets.items():
        if isinstance(spec, dict) and "file" in spec:
            from steercore.experiments.promptsets import read_lines

            read_lines(root / spec["file"], f"{where}: {key}: prompt file '{spec['file']}'")
    _check_scorers(exp, where)
    corpus = exp.corpus
    if corpus.startswith("file:") and exp.needs_cov:
        from steercore.experiments.corpora import read_corpus_file

        if not (root / corpus[5:]).is_file():
            raise ConfigError(f"{where}: cov.corpus: corpus file '{corpus[5:]}' does not exist")
        try:
            n = len(read_corpus_file(root / corpus[5:]))
        except ConfigError as e:
            raise ConfigError(f"{where}: cov.corpus: {e}") from None
        if n < cfg["cov"]["samples"]:
            raise ConfigError(f"{where}: cov.samples: {cfg['cov']['samples']} asked for but corpus file "
                              f"'{corpus[5:]}' holds {n} texts; lower cov.samples or add texts")
    if cfg["model"] in TESTBED_DEFAULTS:
        _check_testbed_concepts(exp, where)


def _check_scorers(exp: Experiment, where: str) -> None:
    """A concept scorer reads what the model makes: images for a t2i model, text for an LM."""
    from steercore.scorers.registry import CONCEPT_SCORERS

    makes = {"t2i": "image", "lm": "text"}[exp.model_kind]
    for concept in exp.test_concepts:
        name = exp.concept_scorer_for(concept)
        if CONCEPT_SCORERS[name].outputs != makes:
            fits = [n for n, sc in CONCEPT_SCORERS.items() if sc.outputs == makes]
            raise ConfigError(f"{where}: scorers.concept: '{name}' scores {CONCEPT_SCORERS[name].outputs}s but "
                              f"{exp['model']} makes {makes}s; choose one of {', '.join(fits)} (or auto)")
    pres = {"t2i": ("fid", "kid"), "lm": ("consistency", "bertscore")}[exp.model_kind]
    if exp.preservation not in pres:
        raise ConfigError(f"{where}: scorers.preservation: '{exp.preservation}' does not measure {makes}s; "
                          f"choose one of {', '.join(pres)} (or auto)")


def _check_testbed_concepts(exp: Experiment, where: str) -> None:
    """Testbed worlds know a fixed vocabulary: refuse concepts they cannot draw or talk about."""
    if exp["model"] == "testbed-t2i":
        from steercore.testbed.shapes import COLOURS, SHAPES

        known = (*COLOURS, *SHAPES)
    else:
        from steercore.testbed.topics import TOPICS

        known = tuple(TOPICS)
    for concept in [exp["source"], exp["target"], *exp["prompts"]["unrelated"], *exp["prompts"]["extra"]]:
        if concept is not None and exp.word(concept) not in known:
            raise ConfigError(f"{where}: concept '{concept}' is not in the {exp['model']} world; "
                              f"choose one of {', '.join(known)}")
