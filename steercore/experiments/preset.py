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
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
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
# Where presets and results live, relative to the workflow directory (or absolute); `configure` sets them
# from the workflow config's `experiments_dir` and `results_dir` keys, so a project that imports Steerflow
# as a Snakemake module can bring its own presets.
PATHS = {"experiments_dir": "config/experiments", "results_dir": "results"}
PRESET_NAME = re.compile(r"[A-Za-z0-9_]+")
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


def validate(data: dict, schema: dict, where: str) -> dict:
    """Validate `data` against `schema`, filling defaults in place; raise one ConfigError line."""
    errors = sorted(_Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        key = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        if e.validator == "oneOf" and isinstance(e.instance, dict):
            msg = "expected a list of prompts, {file: path} or {generator: testbed-shapes|testbed-topics}"
        elif e.validator == "enum":
            msg = f"{e.instance!r} is not allowed; choose one of {', '.join(map(str, e.validator_value))}"
        else:
            msg = e.message
        raise ConfigError(f"{where}: {key}: {msg}")
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
        return f"{PATHS['results_dir']}/cov/{self.stats_dir}/{self.cov_id()}.safetensors"

    def vectors_path(self, concept: str) -> str:
        return f"{PATHS['results_dir']}/vectors/{self.stats_dir}/{self.vectors_id()}/{concept}.safetensors"


def configure(config: dict) -> None:
    """Take `experiments_dir` and `results_dir` from a workflow config (Snakemake's `config`), where given."""
    for key in PATHS:
        if config.get(key):
            PATHS[key] = str(config[key])


def experiments_dir(root: Path = ROOT) -> Path:
    return Path(root) / PATHS["experiments_dir"]


def results_dir(root: Path = ROOT) -> Path:
    return Path(root) / PATHS["results_dir"]


@dataclass(frozen=True)
class Family:
    """A preset family: one file with `sweep:` and the presets it expands into, in the order of the values."""

    name: str
    extends: str | None  # the preset the family varies (its paper artefacts go with that preset's)
    keys: tuple[str, ...]  # the swept keys, dotted (cov.samples)
    members: dict[str, dict] = field(repr=False)  # member name -> the values of `keys` it takes


def _preset_files(root: Path) -> dict[str, Path]:
    """Every preset file by name; a name that is not [A-Za-z0-9_] is refused (it would break target paths)."""
    folder = experiments_dir(root)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no experiments folder; set experiments_dir in the workflow config")
    files = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        if not PRESET_NAME.fullmatch(path.stem):
            raise ConfigError(f"{_where(path, root)}: preset file names may use only letters, digits and '_'; "
                              "rename it")
        if path.stem in files:
            raise ConfigError(f"{_where(path, root)}: a second preset named '{path.stem}' ({files[path.stem].name}); remove one")
        files[path.stem] = path
    return files


def _where(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_absolute() and path.is_relative_to(root) else str(path)


def _read(path: Path, root: Path) -> dict:
    where = _where(path, root)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{where}: cannot read it as YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(data).__name__}")
    return data


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


def _resolved_file(name: str, files: dict[str, Path], root: Path, chain: tuple[str, ...] = ()) -> dict:
    """A preset file with its `extends`/`twin_of` chain merged in (declarations other than `sweep` dropped)."""
    if name in chain:
        raise ConfigError(f"{_where(files[name], root)}: extends: cycle {' -> '.join([*chain[chain.index(name):], name])}")
    data = _read(files[name], root)
    if "extends" in data and "twin_of" in data:
        raise ConfigError(f"{_where(files[name], root)}: twin_of already extends its twin; drop extends")
    key = "twin_of" if "twin_of" in data else "extends"
    parent = data.pop(key, None)
    if parent is None:
        return data
    if parent not in files:
        raise ConfigError(f"{_where(files[name], root)}: {key}: {_unknown(parent, sorted(files), 'preset')}")
    base = _resolved_file(parent, files, root, (*chain, name))
    if "sweep" in base:
        raise ConfigError(f"{_where(files[name], root)}: {key}: '{parent}' is a sweep family; extend one of its "
                          "members or the preset it extends")
    return deep_merge(base, data)


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


def _catalogue(root: Path) -> tuple[dict, dict]:
    """name -> (config, where, twin_of, family) for every preset, and the families by name."""
    files = _preset_files(root)
    presets, families = {}, {}
    for name, path in files.items():
        where = _where(path, root)
        cfg = _resolved_file(name, files, root)
        if "sweep" in cfg:
            members = expand_sweep(name, cfg, where)
            families[name] = Family(name, _read(path, root).get("extends"),
                                    tuple(k for k in cfg["sweep"] if k != "name"),
                                    {m: values for m, (_, values) in members.items()})
            for member, (mcfg, _) in members.items():
                if member in files or member in presets:
                    raise ConfigError(f"{where}: sweep: member '{member}' clashes with another preset of that name")
                presets[member] = (mcfg, where, None, name)
        elif name in presets:
            raise ConfigError(f"{where}: preset '{name}' clashes with a sweep member of that name")
        else:
            presets[name] = (cfg, where, _read(path, root).get("twin_of"), None)
    return presets, families


_CATALOGUES: dict = {}


def _presets(root: Path) -> tuple[dict, dict]:
    """The catalogue of `root`'s presets, read again only when a preset file changes (the DAG loads every
    preset many times)."""
    folder = experiments_dir(root)
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.glob("*.y*ml"))) \
        if folder.is_dir() else ()
    key = (Path(root).resolve(), PATHS["experiments_dir"])
    if _CATALOGUES.get(key, (None,))[0] != stamp:
        _CATALOGUES[key] = (stamp, _catalogue(Path(root)))
    return _CATALOGUES[key][1]


def experiment_path(name: str, root: Path = ROOT) -> Path:
    """The file that defines preset `name` (for a sweep member: its family's file)."""
    presets, _ = _presets(root)
    if name in presets and presets[name][3]:
        return experiments_dir(root) / f"{presets[name][3]}.yaml"
    return experiments_dir(root) / f"{name}.yaml"


def list_experiments(root: Path = ROOT) -> list[str]:
    """Every preset name: plain presets and the members of every sweep family (not the families themselves)."""
    return sorted(_presets(root)[0])


def list_families(root: Path = ROOT) -> dict[str, Family]:
    """The sweep families by name."""
    return dict(_presets(root)[1])


def load_experiment(name_or_path: str | Path, root: Path = ROOT) -> Experiment:
    """Load, validate and complete an experiment by preset name or path; one ConfigError line on any mistake."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.resolve().parent == experiments_dir(root).resolve():
        path = Path(path.stem)  # a preset file of this workflow: by name, so extends/twin_of/sweep apply
    if path.suffix in (".yaml", ".yml"):
        where = _where(path, root)
        cfg = _read(path, root)
        if any(k in cfg for k in DECLARATIONS):
            raise ConfigError(f"{where}: extends, twin_of and sweep work between presets in "
                              f"{PATHS['experiments_dir']}/; load this one by name")
        name, twin, family = path.stem, None, None
    else:
        check_preset_name(str(path), root)
        presets, _ = _presets(root)
        cfg, where, twin, family = presets[str(path)]
        name = str(path)
    cfg = json.loads(json.dumps(cfg))  # a private copy: validation fills defaults in place
    validate(cfg, schema(), where)
    _check_strengths(cfg, where)
    exp = Experiment(name, cfg, twin, family)
    _check_semantics(exp, where, root)
    if twin:
        _check_twin(exp, where, root)
    return exp


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
        if isinstance(spec, dict) and "file" in spec and not (root / spec["file"]).is_file():
            raise ConfigError(f"{where}: {key}: prompt file '{spec['file']}' does not exist")
    corpus = exp.corpus
    if corpus.startswith("file:") and not (root / corpus[5:]).is_file():
        raise ConfigError(f"{where}: cov.corpus: corpus file '{corpus[5:]}' does not exist")
    if cfg["model"] in TESTBED_DEFAULTS:
        _check_testbed_concepts(exp, where)


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
        cfg, where, twin, family = presets[name]
        note = (f"member of {family} ({', '.join(f'{k}={v}' for k, v in families[family].members[name].items())})"
                if family else f"clip twin of {twin}" if twin else "")
        lines.append(f"{name:40s} {note}".rstrip())
    return lines


if __name__ == "__main__":
    # `python -m steercore.experiments.preset`: every preset the workflow can build, with families expanded.
    print("\n".join(describe_presets()))
