# Helpers and input functions shared by the rule files. Every experiment preset is loaded and validated
# here, at parse time, so a bad config stops the run before any job starts, with one line naming the key.
import os
import shlex
import sys
from pathlib import Path

from steercore.core.errors import SteerError
from steercore.core.methods import get_method
from steercore.experiments.preset import SETTINGS, Condition, configure


def _python():
    """The interpreter jobs run: the job's conda env under --software-deployment-method conda, else the one
    running Snakemake (the project's .venv), whatever PATH says."""
    from snakemake.settings.types import DeploymentMethod

    return "python" if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method else sys.executable


PYTHON = _python()
# The scripts, found from this file rather than the working directory, so that a project that `module`s this
# workflow runs them too. Every value a shell command interpolates is quoted there with Snakemake's `:q`.
SCRIPTS = os.path.normpath(os.path.join(workflow.current_basedir.get_path_or_uri(secret_free=False), "..", "workflow_scripts"))


def script(name):
    return os.path.join(SCRIPTS, f"{name}.py")



wildcard_constraints:
    model="[A-Za-z0-9_.-]+",
    covid="[A-Za-z0-9_-]+",
    vecid="[0-9a-f]{8}",
    concept="[A-Za-z0-9_]+",
    experiment="[A-Za-z0-9_]+",
    shard="[0-9]+",
    shards="[0-9]+",
    condition="[A-Za-z0-9_]+-[A-Za-z0-9.+-]+",


# The project: the working directory, where Snakemake runs every job, also when a project imports this
# workflow as a module. Its experiments_dir and results_dir (config keys) are relative to it; `configure`
# takes them and `scale` from the config, and every job that loads a preset gets the same three (PRESET_ARGS).
PROJECT = Path.cwd()


def _load_all():
    from steercore.experiments.workflow_config import load_presets

    try:
        configure(config)
        return load_presets(config["experiments"], PROJECT)
    except SteerError as e:
        sys.exit(f"Steerflow config error: {e}")


EXPERIMENTS = _load_all()
RESULTS = SETTINGS["results_dir"]
PRESET_ARGS = (f"--experiments-dir {shlex.quote(SETTINGS['experiments_dir'])} --results-dir {shlex.quote(RESULTS)}"
               f" --scale {SETTINGS['scale']!r}")


def res(path):
    """A path under the results root (config `results_dir`)."""
    return f"{RESULTS}/{path}"

DEVICE = config["device"]
THREADS = config["threads"]


# Warm starts (workflow_scripts/warm.py): on a machine without a GPU, jobs run locally fork from one server
# that has imported torch, diffusers, transformers and steercore once, instead of importing them each (~5 s of
# CPU per job). The Snakefile's onstart starts it; it ends with this Snakemake process. Outputs do not depend
# on it: a job forked from it runs the same script with the same environment as a cold one.
_warm = {}


def start_warm_server():
    """Start this run's warm server (onstart), unless config `warm_start` is false or jobs run elsewhere (an
    executor other than local) or in conda envs; `warm.launch` also declines where a GPU is visible."""
    import importlib.util

    off = config["warm_start"] in (False, "false")
    if off or not workflow.local_exec or PYTHON != sys.executable:
        return
    spec = importlib.util.spec_from_file_location("warm", script("warm"))
    warm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(warm)
    _warm["server"] = warm.launch("logs/warm_server.log")


def stop_warm_server():
    server = _warm.pop("server", None)
    if server is not None:  # a server that already ended (its parent check) is simply reaped
        server.terminate()
        server.wait()


# Host memory (MB) of a model job by model kind; the testbed needs little. Profiles may raise it per rule.
MEM_MB = {"t2i": 32000, "lm": 48000, "testbed": 4000}


def cov_path(exp):
    return exp.cov_path()


def vectors_path(exp, concept):
    return exp.vectors_path(concept)


def _owner(match):
    """The first experiment whose derived path satisfies `match` (all such experiments agree on it)."""
    for name, exp in EXPERIMENTS.items():
        if match(exp):
            return name
    raise ValueError("no experiment produces this file")


def cov_owner(w):
    return _owner(lambda e: e.stats_dir == w.model and e.cov_id() == w.covid)


def vectors_owner(w):
    return _owner(lambda e: e.stats_dir == w.model and e.vectors_id() == w.vecid
                  and w.concept in e.concepts)


def cov_shards(w):
    exp = EXPERIMENTS[cov_owner(w)]
    k = exp["cov"]["shards"]
    return [res(f"cov/{w.model}/shards/{w.covid}.{i}of{k}.safetensors") for i in range(k)]


def mem_of(exp_name):
    exp = EXPERIMENTS[exp_name]
    return MEM_MB["testbed" if exp["model"].startswith("testbed-") else exp.model_kind]


# ---- the job grain (issue 12): one generate/score job per condition, or per method when an experiment packs

# config.yaml `pack`: auto (each preset decides), true or false (every experiment)
PACK = str(config.get("pack", "auto")).lower()
if PACK not in ("auto", "true", "false"):
    sys.exit(f"Steerflow config error: config.yaml: pack: '{PACK}' is not auto, true or false")


def units(name):
    """Job label → conditions of experiment `name`: `none-0`, `casteer-2`, ... or, packed, `casteer-all`."""
    return EXPERIMENTS[name].job_units(PACK)


def unit_conditions(w):
    found = units(w.experiment).get(w.condition)
    if found is None:
        raise ValueError(f"experiment {w.experiment} has no job '{w.condition}' (pack={PACK}); "
                         f"jobs: {', '.join(units(w.experiment))}")
    return found


def generating(name):
    """The experiment whose generated outputs `name` scores: itself, or its `outputs_from`."""
    return EXPERIMENTS[name]["outputs_from"] or name


def unit_manifest(name, unit):
    return res(f"generate/{name}/{unit}/manifest.tsv")


def unit_manifests(w):
    return [unit_manifest(w.experiment, u) for u in units(w.experiment)]


def generate_inputs(w):
    """The statistics the job's steered conditions read (none for the baseline)."""
    exp = EXPERIMENTS[w.experiment]
    methods = {c.method for c in unit_conditions(w) if c.method != "none"}
    if not methods:
        return {}
    inputs = {f"vectors_{c}": vectors_path(exp, c) for c in exp.concepts}
    if any(get_method(m).needs_neutral for m in methods):
        inputs["cov"] = cov_path(exp)
    return inputs


_DIGESTS = {}


def _digest(kind, name, cond):
    key = (kind, name, cond)
    if key not in _DIGESTS:
        exp = EXPERIMENTS[name]
        _DIGESTS[key] = exp.generation_digest(cond) if kind == "generate" else exp.scoring_digest(cond)
    return _DIGESTS[key]


def generate_digest(w):
    """The digests of the settings the job's outputs depend on, one per condition: the params trigger reruns
    the job when one changes."""
    return ",".join(_digest("generate", w.experiment, c) for c in unit_conditions(w))


def score_digest(w):
    return ",".join(_digest("score", w.experiment, c) for c in unit_conditions(w))


def baseline_digest(w):
    return _digest("score", w.experiment, Condition("none", 0.0))


def score_inputs(w):
    """The generate manifests that list the job's conditions and the baseline (of `outputs_from` when set),
    and, for images, the baseline's features."""
    gen = generating(w.experiment)
    wanted = {c.label for c in unit_conditions(w)} | {"none-0"}
    manifests = [unit_manifest(gen, u) for u, conds in units(gen).items() if wanted & {c.label for c in conds}]
    inputs = {"manifests": manifests}
    if is_t2i(w.experiment):
        inputs["reference"] = res(f"scores/{w.experiment}/baseline_features")
    return inputs


def score_tables(w, table):
    return [res(f"scores/{w.experiment}/{u}/{table}.tsv") for u in units(w.experiment)]


def manifest_of(w):
    """The gathered generate manifest an experiment shows: its own, or that of `outputs_from`."""
    return res(f"generate/{generating(w.experiment)}/manifest.tsv")


def is_t2i(name):
    return EXPERIMENTS[name].model_kind == "t2i"


def default_targets():
    out = []
    for name in config["experiments"]:
        out += [res(f"pareto/{name}.pdf"), res(f"pareto/{name}.svg"), res(f"pareto/{name}.intervals.tsv")]
        if is_t2i(name):
            out.append(res(f"pareto/{name}_grid.png"))
    return out


def log(rule, pattern):
    return f"logs/{rule}/{pattern}.log"


def bench(rule, pattern):
    return res(f"benchmarks/{rule}/{pattern}.tsv")


# ---- paper figures and tables (rules/paper.smk; added with issue 8)
from steercore.figures.artefacts import ARTEFACT_PATTERN as PAPER_ARTEFACT
from steercore.figures.artefacts import Artefact, paper_artefacts


def paper_inputs(w):
    """The score tables of the experiments that feed the artefact."""
    exps = Artefact.parse(w.artefact).experiments(PROJECT)
    return [res(f"scores/{e.name}/{t}.tsv") for e in exps for t in ("concept_scores", "preservation")]


def paper_targets():
    """Every artefact of the configured experiments (and their models' covariance-size ablations), then the
    config's `artefacts`, each checked against the presets before any job runs."""
    try:
        names = paper_artefacts(config["experiments"], PROJECT)
    except SteerError as e:
        sys.exit(f"Steerflow config error: {e}")
    for name in config.get("artefacts", []):
        try:
            Artefact.parse(name).experiments(PROJECT)
        except SteerError as e:
            sys.exit(f"Steerflow config error: config.yaml: artefacts: {e}")
    names = list(dict.fromkeys(names + config.get("artefacts", [])))
    return [res(f"paper/{a}.{s}") for a in names for s in ("pdf", "svg", "tex")]
