"""Experiments: loading and validating `config/experiments/<name>.yaml`, and everything derived from one.

An experiment is one model, one concept switch (source → target) or erasure (source), several methods and
strengths, and test prompts for the source, target and unrelated concepts. The JSON schema
(`config/experiment.schema.yaml`) rejects unknown keys and wrong types and fills defaults; `load_experiment`
adds the checks a schema cannot make (known model, prompt files exist, target given for a switch) and turns
every mistake into one `ConfigError` line that names the file and the key.

A preset states only what differs: `extends: <preset>` deep-merges it over another preset (the child wins; a
key set to null is removed, so its default applies), `twin_of: <preset>` does the same and declares a clip
twin (the two differ only in `clip`), and a file with `sweep:` is a family, not a preset: it expands into one
preset per swept value, named `<family>_<suffix>` (see `expand_sweep`).

Presets are looked up in the project's `experiments_dir` first, then in Steerflow's own `config/experiments`
(a project that imports Steerflow as a Snakemake module brings its own presets, and may extend or shadow the
shipped ones). A relative file a preset names (`{file: ...}` prompts, a `file:` corpus) is relative to the
project of the preset file that names it: the importing project for its own files, this checkout for the
shipped ones and for the defaults.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import jsonschema
import yaml

from steercore.core.errors import ConfigError
from steercore.core.methods import METHODS, get_method



# The Steerflow checkout of this package: its schemas, its shipped presets and the prompt files they name.
STEERFLOW = Path(__file__).resolve().parents[2]
SHIPPED = STEERFLOW / "config" / "experiments"


def find_root() -> Path:
    """The project whose presets and results the Python API uses by default: the working directory when it
    holds config/experiments (a project, or a copy of the workflow), else this checkout. The workflow always
    passes its working directory (where Snakemake runs every job) as `root`."""
    here = Path.cwd()
    return here if (here / "config" / "experiments").is_dir() else STEERFLOW


ROOT = find_root()
SCHEMA = STEERFLOW / "config" / "experiment.schema.yaml"
# The workflow config's keys that say where presets are found, where results go (both relative to the project
# or absolute) and by how much every count of a preset shrinks. `configure` sets them: the Snakefile from its
# config, every job from the arguments its rule passes, so the DAG and the jobs load the same presets.
SETTINGS = {"experiments_dir": "config/experiments", "results_dir": "results", "scale": 1.0}
PRESET_NAME = re.compile(r"^[A-Za-z0-9_]+$")  # as the schema's name pattern: wildcards, paths, job arguments
# Keys of a preset file that say how it is built, not what it runs: not part of the resolved config.
DECLARATIONS = ("extends", "twin_of", "sweep")
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
    elif e.validator == "pattern" and e.validator_value == PRESET_NAME.pattern:
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
    twin_of: str | None = None  # declared clip twin: this preset is `twin_of` with `clip` toggled
    family: str | None = None  # the sweep file this preset was generated from
    roots: dict = field(default_factory=dict, compare=False, repr=False)
    """Key path of each relative file the preset names (("prompts", "source"), ("cov", "corpus")) -> the
    project it is relative to (see `root_of`)."""
    scale: float = 1.0  # the `scale` its counts were multiplied by (steercore.experiments.scale)

    def __getitem__(self, key):
        return self.cfg[key]

    @property
    def model_kind(self) -> str:
        from steercore.models.registry import resolve_spec

        return resolve_spec(self.cfg["model"]).kind

    @property
    def stats_model(self) -> str:
        return self.cfg["stats_model"] or self.cfg["model"]

    def root_of(self, *key: str) -> Path:
        """The folder a relative file of the prompt set (or corpus) at `key` is found in: the project of the
        preset file that names it; Steerflow's checkout for a default (e.g. the model kind's concept prompts)."""
        return self.roots.get(key, STEERFLOW)

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

    def strengths_of(self, method: str) -> list[float]:
        """The strength grid of one method: `strengths` is one list for all methods or a mapping method → list."""
        s = self.cfg["strengths"]
        return [float(b) for b in (s[method] if isinstance(s, dict) else s)]

    @property
    def conditions(self) -> list[Condition]:
        """The baseline first, then every method × its strengths."""
        return [Condition(*BASELINE)] + [Condition(m, b) for m in self.cfg["methods"] for b in self.strengths_of(m)]

    def cov_id(self, shard: int | None = None, shards: int | None = None) -> str:
        """Identifies a neutral-statistics file: corpus, sample count, aggregation, steps, site kind."""
        c = self.cfg["cov"]
        parts = [re.sub(r"[^A-Za-z0-9_-]", "_", self.corpus), f"n{c['samples']}", c["aggregation"],
                 "perstep" if c["per_step"] else "step0"]
        if self.model_kind == "lm":
            parts.append(self.cfg["llm_site"])
        if self.cfg.get("dtype"):
            parts.append(self.cfg["dtype"])
        if self.scale != 1:  # a scaled run never shares statistics with a full-size one
            parts.append(f"x{_value_name(self.scale)}")
        return "_".join(parts)

    def vectors_id(self) -> str:
        """Identifies concept-mean files: prompts, sample count, aggregation, steps, site kind (short hash)."""
        v = self.cfg["vectors"]
        # keys without a default enter the hash only when set: presets that never set them keep their files' ids
        optional = {k: v[k] for k in ("seeds_per_prompt", "seed") if k in v} | \
            ({"dtype": self.cfg["dtype"]} if self.cfg.get("dtype") else {})
        key = [self.vector_prompts, v["samples"], v["aggregation"], self.cfg["cov"]["per_step"],
               self.cfg["llm_site"] if self.model_kind == "lm" else None, self.cfg["steps"], self.cfg["seed"]]
        key = json.dumps(key + ([optional] if optional else []) + ([self.scale] if self.scale != 1 else []),
                         sort_keys=True)
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
        return f"{SETTINGS['results_dir']}/cov/{self.stats_dir}/{self.cov_id()}.safetensors"

    def vectors_path(self, concept: str) -> str:
        return f"{SETTINGS['results_dir']}/vectors/{self.stats_dir}/{self.vectors_id()}/{concept}.safetensors"

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
        if self.scale != 1:  # a scaled run never reuses full-size outputs (scale 1 keeps the digests of before)
            out["scale"] = self.scale
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
                   "cov", "vectors", "stats_model", "diagnostics")
_STEERING_ONLY = ("kind", "identity_cov", "clip", "renormalize", "zero_mu", "only_up", "generated_only", "llm_site",
                  "llm_positions", "regularize", "cfg_halves")


def configure(config: dict) -> None:
    """Take `experiments_dir`, `results_dir` and `scale` from a workflow config (Snakemake's `config`, or the
    arguments a rule passes its job); a key not given takes its default, so no earlier call leaks into this one."""
    from steercore.experiments.scale import check_scale

    defaults = {"experiments_dir": "config/experiments", "results_dir": "results", "scale": 1.0}
    given = {k: config[k] for k in defaults if config.get(k) is not None}
    for key in ("experiments_dir", "results_dir"):
        if key in given:  # one spelling of each folder: the rules' paths and the digests compare strings
            given[key] = os.path.normpath(str(given[key]))
    if "scale" in given:
        given["scale"] = check_scale(given["scale"])
    SETTINGS.clear()
    SETTINGS.update({**defaults, **given})


def experiments_dir(root: Path = ROOT) -> Path:
    """The project's presets (`experiments_dir`, relative to the project `root`)."""
    return Path(root) / SETTINGS["experiments_dir"]


def results_dir(root: Path = ROOT) -> Path:
    """The root of every output (`results_dir`, relative to the project `root`)."""
    return Path(root) / SETTINGS["results_dir"]


def preset_folders(root: Path = ROOT) -> list[tuple[Path, Path]]:
    """(folder, project) pairs in lookup order: the project's experiments_dir, then Steerflow's own presets.
    The project is what the relative files of the folder's presets are relative to."""
    folders = [(experiments_dir(root), Path(root)), (SHIPPED, STEERFLOW)]
    return [f for i, f in enumerate(folders) if f[0].resolve() not in {g.resolve() for g, _ in folders[:i]}]


@dataclass(frozen=True)
class Family:
    """A preset family: one file with `sweep:` and the presets it expands into, in the order of the values."""

    name: str
    extends: str | None  # the preset the family varies (its paper artefacts go with that preset's)
    keys: tuple[str, ...]  # the swept keys, dotted (cov.samples)
    members: dict[str, dict] = field(repr=False)  # member name -> the values of `keys` it takes


class _File(NamedTuple):
    path: Path
    project: Path  # what the relative files it names are relative to


def _preset_files(root: Path) -> dict[str, list[_File]]:
    """Every preset file by name, in lookup order (the project's before Steerflow's: the first one is the
    preset, a later one can only be extended); a name that is not [A-Za-z0-9_] is refused (it would break
    target paths)."""
    folder = experiments_dir(root)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no experiments folder; set experiments_dir in the workflow config")
    files: dict[str, list[_File]] = {}
    for folder, project in preset_folders(root):
        for path in sorted(folder.glob("*.yml")):
            raise ConfigError(f"{_where(path, root)}: presets end in .yaml; rename it to {path.stem}.yaml")
        for path in sorted(folder.glob("*.yaml")):
            check_name(path.stem, _where(path, root))
            files.setdefault(path.stem, []).append(_File(path, project))
    return files


def _where(path: Path, root: Path) -> str:
    root = Path(root).resolve()
    path = path.resolve() if path.is_absolute() else path
    return str(path.relative_to(root)) if path.is_absolute() and path.is_relative_to(root) else str(path)


def _file_refs(data: dict) -> list[tuple[str, ...]]:
    """Key paths of the files a preset's data names: every prompt set's `file` (the key path of the set) and a
    `file:` corpus (("cov", "corpus"))."""
    refs = []

    def walk(node, path):
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                refs.append(path)
            for k, v in node.items():
                walk(v, (*path, k))

    walk({k: v for k, v in data.items() if k not in DECLARATIONS}, ())
    cov = data.get("cov")
    if isinstance(cov, dict) and isinstance(cov.get("corpus"), str) and cov["corpus"].startswith("file:"):
        refs.append(("cov", "corpus"))
    return refs


def _sets(data: dict, key: tuple[str, ...]) -> bool:
    """Whether merging `data` over a preset replaces the file reference at `key` (see deep_merge)."""
    node = data
    for part in (*key, "file") if key != ("cov", "corpus") else key:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
        if not isinstance(node, dict):
            return True
    return False


def _read(path: Path, root: Path) -> dict:
    return read_yaml(path, _where(path, root))


def deep_merge(base: dict, child: dict) -> dict:
    """`child` over `base`: mappings merge key by key, anything else (lists too) is replaced; a child key set to
    None removes the key. Key order is the base's, then the child's new keys."""
    out = dict(base)
    for key, value in child.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = deep_merge(out[key] if isinstance(out.get(key), dict) else {}, value)
        else:
            out[key] = value
    return out


def _unknown(name: str, names: list[str], what: str = "experiment") -> ConfigError:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"presets: {', '.join(names)}"
    return ConfigError(f"unknown {what} '{name}'; {hint}")


def check_preset_name(name: str, root: Path = ROOT) -> None:
    """One line naming the close preset names when `name` (e.g. a target's wildcard) names no preset."""
    presets, families = _presets(root)
    if name in families:
        raise ConfigError(f"'{name}' is a preset family (sweep:), not a preset; use one of its members: "
                          f"{', '.join(families[name].members)}")
    if name not in presets:
        raise _unknown(name, sorted(presets))


def _resolved_file(file: _File, files: dict[str, list[_File]], root: Path,
                   chain: tuple[Path, ...] = ()) -> tuple[dict, dict]:
    """A preset file with its `extends`/`twin_of` chain merged in (declarations other than `sweep` dropped),
    and the project each file reference in it is relative to (`Experiment.roots`). A parent is looked up like
    a preset, except that a file never extends itself: `extends: ci` in a project's own ci.yaml is Steerflow's."""
    where = _where(file.path, root)
    if file.path in chain:
        cycle = [p.stem for p in chain[chain.index(file.path):]] + [file.path.stem]
        raise ConfigError(f"{where}: extends: cycle {' -> '.join(cycle)}")
    data = _read(file.path, root)
    if "extends" in data and "twin_of" in data:
        raise ConfigError(f"{where}: twin_of already extends its twin; drop extends")
    key = "twin_of" if "twin_of" in data else "extends"
    parent = data.pop(key, None)
    if parent is None:
        return data, {ref: file.project for ref in _file_refs(data)}
    found = [f for f in files.get(parent, []) if f.path != file.path]
    if not found:
        raise ConfigError(f"{where}: {key}: {_unknown(parent, sorted(files), 'preset')}")
    base, base_roots = _resolved_file(found[0], files, root, (*chain, file.path))
    if "sweep" in base:
        raise ConfigError(f"{where}: {key}: '{parent}' is a sweep family; extend one of its "
                          "members or the preset it extends")
    merged = deep_merge(base, data)
    return merged, {ref: file.project if _sets(data, ref) else base_roots[ref] for ref in _file_refs(merged)}


def _set_dotted(cfg: dict, dotted: str, value) -> dict:
    head, _, rest = dotted.partition(".")
    sub = cfg.get(head)
    return {**cfg, head: _set_dotted(sub if isinstance(sub, dict) else {}, rest, value) if rest else value}


def _value_name(value) -> str:
    """A swept value as part of a preset name: 1000 -> 1000, 1.5 -> 1p5, True -> true."""
    text = str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)
    return text.replace(".", "p").replace("-", "m")


def expand_sweep(family: str, data: dict, where: str) -> dict[str, tuple[dict, dict]]:
    """The members of a sweep file: name -> (config, swept values). `sweep:` maps dotted keys to lists of equal
    length, zipped (member i takes the i-th value of each); `sweep.name` is a template for the part of the name
    after `<family>_` (default: the last part of each key and its value, e.g. samples100). `{key}` in
    `sweep.name` and in the description is replaced by the member's value."""
    if not isinstance(data["sweep"], dict):
        raise ConfigError(f"{where}: sweep: expected a mapping of dotted keys to lists, e.g. {{cov.samples: [100, 1000]}}")
    sweep = dict(data["sweep"])
    template = sweep.pop("name", None)
    if not sweep or not all(isinstance(v, list) and v for v in sweep.values()):
        raise ConfigError(f"{where}: sweep: give each swept key a non-empty list of values")
    lengths = {len(v) for v in sweep.values()}
    if len(lengths) != 1:
        raise ConfigError(f"{where}: sweep: the lists have different lengths ({', '.join(f'{k}: {len(v)}' for k, v in sweep.items())}); "
                          "they are zipped, so give each key one value per member")
    template = template or "_".join(f"{k.rsplit('.', 1)[-1]}{{{k}}}" for k in sweep)
    base = {k: v for k, v in data.items() if k != "sweep"}
    members = {}
    for i in range(lengths.pop()):
        values = {k: v[i] for k, v in sweep.items()}

        def fill(text, as_name):
            return re.sub(r"\{([A-Za-z0-9_.]+)\}", lambda m: _value_name(values[m[1]]) if as_name else str(values[m[1]])
                          if m[1] in values else m[0], text)

        name = f"{family}_{fill(template, True)}"
        if not PRESET_NAME.fullmatch(name):
            raise ConfigError(f"{where}: sweep.name: member name '{name}' may use only letters, digits and '_'")
        if name in members:
            raise ConfigError(f"{where}: sweep: two members are named '{name}'; put every swept key in sweep.name")
        cfg = dict(base)
        for k, v in values.items():
            cfg = _set_dotted(cfg, k, v)
        if isinstance(cfg.get("description"), str):
            cfg["description"] = fill(cfg["description"], False)
        members[name] = (cfg, values)
    return members


class _Entry(NamedTuple):
    """A preset of the catalogue: its merged config, the file that defines it and how it is declared."""

    cfg: dict
    where: str
    twin_of: str | None
    family: str | None
    roots: dict
    path: Path
    parent: str | None = None  # the preset it extends or is a twin of: a mistake it wrote is reported there


def _catalogue(root: Path) -> tuple[dict[str, _Entry], dict]:
    """Every preset by name, and the families by name. A project's preset shadows Steerflow's of that name."""
    files = _preset_files(root)
    presets, families = {}, {}
    for name, (file, *_) in files.items():
        where = _where(file.path, root)
        cfg, roots = _resolved_file(file, files, root)
        declared = _read(file.path, root)
        if "sweep" in cfg:
            members = expand_sweep(name, cfg, where)
            families[name] = Family(name, declared.get("extends"), tuple(k for k in cfg["sweep"] if k != "name"),
                                    {m: values for m, (_, values) in members.items()})
            swept = [tuple(k.split(".")) for k in cfg["sweep"] if k != "name"]
            for member, (mcfg, _) in members.items():
                if member in files or member in presets:
                    raise ConfigError(f"{where}: sweep: member '{member}' clashes with another preset of that name")
                mroots = {ref: file.project if any(ref[:len(k)] == k for k in swept) else roots.get(ref, file.project)
                          for ref in _file_refs(mcfg)}
                presets[member] = _Entry(mcfg, where, None, name, mroots, file.path, declared.get("extends"))
        elif name in presets:
            raise ConfigError(f"{where}: preset '{name}' clashes with a sweep member of that name")
        else:
            presets[name] = _Entry(cfg, where, declared.get("twin_of"), None, roots, file.path,
                                   declared.get("twin_of") or declared.get("extends"))
    return presets, families


_CATALOGUES: dict = {}


def _presets(root: Path) -> tuple[dict, dict]:
    """The catalogue of `root`'s presets, read again only when a preset file changes (the DAG loads every
    preset many times)."""
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for folder, _ in preset_folders(root)
                  if folder.is_dir() for p in sorted(folder.glob("*.y*ml")))
    key = (Path(root).resolve(), SETTINGS["experiments_dir"])
    if _CATALOGUES.get(key, (None,))[0] != stamp:
        _CATALOGUES[key] = (stamp, _catalogue(Path(root)))
    return _CATALOGUES[key][1]

    # ---- the job grain (issue 12): which conditions share a job, and what each job's outputs depend on

def _digest(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def experiment_path(name: str, root: Path = ROOT) -> Path:
    """The file that defines preset `name` (for a sweep member: its family's file)."""
    presets, _ = _presets(root)
    return presets[name].path if name in presets else experiments_dir(root) / f"{name}.yaml"


def check_name(name: str, where: str) -> str:
    """Experiment names become wildcards, paths and job arguments: letters, digits and _ only."""
    if not PRESET_NAME.fullmatch(name):
        raise ConfigError(f"{where}: experiment name {name!r} may contain only letters, digits and _ "
                          "(no spaces, hyphens or dots); rename the file")
    return name


def list_experiments(root: Path = ROOT) -> list[str]:
    """Every preset name: plain presets and the members of every sweep family (not the families themselves)."""
    return sorted(_presets(root)[0])


def list_families(root: Path = ROOT) -> dict[str, Family]:
    """The sweep families by name."""
    return dict(_presets(root)[1])


def load_experiment(name_or_path: str | Path, root: Path = ROOT) -> Experiment:
    """Load, validate and complete an experiment by preset name or path; one ConfigError line on any mistake."""
    path = Path(name_or_path)
    if path.suffix == ".yaml":
        entry = _presets(root)[0].get(path.stem)
        if entry is not None and entry.path.resolve() == path.resolve():
            path = Path(path.stem)  # a preset file of the catalogue: by name, so extends/twin_of/sweep apply
    if path.suffix in (".yaml", ".yml"):
        where = _where(path, root)
        check_name(path.stem, where)
        cfg = _read(path, root)
        if any(k in cfg for k in DECLARATIONS):
            raise ConfigError(f"{where}: extends, twin_of and sweep work between presets in "
                              f"{SETTINGS['experiments_dir']}/; load this one by name")
        name, twin, family, roots = path.stem, None, None, {ref: Path(root) for ref in _file_refs(cfg)}
        parent = None
    else:
        check_preset_name(str(path), root)
        entry = _presets(root)[0][str(path)]
        cfg, where, twin, family, roots = entry.cfg, entry.where, entry.twin_of, entry.family, entry.roots
        name, parent = str(path), entry.parent
    cfg = json.loads(json.dumps(cfg))  # a private copy: validation fills defaults in place
    try:
        validate(cfg, schema(), where)
        _check_strengths(cfg, where)
    except ConfigError:
        if parent and parent != name and parent in _presets(root)[0]:
            load_experiment(parent, root)  # a mistake the parent wrote: one line naming the parent's file
        raise
    exp = Experiment(name, cfg, twin, family, roots)
    if SETTINGS["scale"] != 1:  # before the checks, so that twins and outputs_from compare scaled presets
        from steercore.experiments.scale import scale_preset

        exp = scale_preset(exp, SETTINGS["scale"])
    _check_semantics(exp, where, root)
    if twin:
        _check_twin(exp, where, root)
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


def _check_strengths(cfg: dict, where: str) -> None:
    """A per-method strength mapping names exactly the experiment's methods."""
    s = cfg["strengths"]
    if isinstance(s, dict):
        missing = [m for m in cfg["methods"] if m not in s]
        extra = [m for m in s if m not in cfg["methods"]]
        if missing:
            raise ConfigError(f"{where}: strengths: no grid for method {missing[0]}; give every method in methods a list")
        if extra:
            raise ConfigError(f"{where}: strengths.{extra[0]}: not one of the methods ({', '.join(cfg['methods'])}); "
                              "remove it or add the method")


def _check_twin(exp: Experiment, where: str, root: Path) -> None:
    """A declared clip twin differs from its twin in `clip` (and its description) only."""
    other = load_experiment(exp.twin_of, root)
    diff = [k for k in exp.cfg if k not in ("clip", "description") and exp.cfg[k] != other.cfg.get(k)]
    if other["clip"] == exp["clip"] or diff:
        why = f"it also differs in {', '.join(diff)}" if diff else "both have the same clip"
        raise ConfigError(f"{where}: twin_of: '{exp.twin_of}' is not its clip twin ({why}); "
                          "a clip twin differs in clip only")


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
    if cfg.get("cfg_halves") == "both" and exp.model_kind == "lm":
        raise ConfigError(f"{where}: cfg_halves: {cfg['model']} is a language model; CFG halves are a diffusion "
                          "setting")
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

            read_lines(exp.root_of(*key.split(".")) / spec["file"], f"{where}: {key}: prompt file '{spec['file']}'")
    _check_scorers(exp, where)
    corpus = exp.corpus
    if corpus.startswith("file:") and exp.needs_cov:
        from steercore.experiments.corpora import read_corpus_file

        corpus_file = exp.root_of("cov", "corpus") / corpus[5:]
        if not corpus_file.is_file():
            raise ConfigError(f"{where}: cov.corpus: corpus file '{corpus[5:]}' does not exist")
        try:
            n = len(read_corpus_file(corpus_file))
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


def describe_presets(root: Path = ROOT) -> list[str]:
    """One line per preset: its name and how it is declared (family member, clip twin, what it extends)."""
    presets, families = _presets(root)
    lines = []
    for name in sorted(presets):
        twin, family = presets[name].twin_of, presets[name].family
        note = (f"member of {family} ({', '.join(f'{k}={v}' for k, v in families[family].members[name].items())})"
                if family else f"clip twin of {twin}" if twin else "")
        lines.append(f"{name:40s} {note}".rstrip())
    return lines


if __name__ == "__main__":
    # `python -m steercore.experiments.preset`: every preset the workflow can build, with families expanded.
    print("\n".join(describe_presets()))
