# Helpers and input functions shared by the rule files. Every experiment preset is loaded and validated
# here, at parse time, so a bad config stops the run before any job starts, with one line naming the key.
import sys

from steercore.core.errors import SteerError
from steercore.experiments.preset import ROOT, list_experiments, load_experiment



def _python():
    """The interpreter jobs run: the job's conda env under --software-deployment-method conda, else the one
    running Snakemake (the project's .venv), whatever PATH says."""
    from snakemake.settings.types import DeploymentMethod

    return "python" if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method else sys.executable


PYTHON = _python()

wildcard_constraints:
    model="[A-Za-z0-9_.-]+",
    covid="[A-Za-z0-9_-]+",
    vecid="[0-9a-f]{8}",
    concept="[A-Za-z0-9_]+",
    experiment="[A-Za-z0-9_]+",
    shard="[0-9]+",
    shards="[0-9]+",


def _load_all():
    from steercore.experiments.workflow_config import load_presets

    try:
        return load_presets(config["experiments"])
    except SteerError as e:
        sys.exit(f"Steerflow config error: {e}")


EXPERIMENTS = _load_all()
DEVICE = config["device"]
THREADS = config["threads"]
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
    return [f"results/cov/{w.model}/shards/{w.covid}.{i}of{k}.safetensors" for i in range(k)]


def mem_of(exp_name):
    exp = EXPERIMENTS[exp_name]
    return MEM_MB["testbed" if exp["model"].startswith("testbed-") else exp.model_kind]


def generate_inputs(w):
    exp = EXPERIMENTS[w.experiment]
    inputs = {f"vectors_{c}": vectors_path(exp, c) for c in exp.concepts}
    if exp.needs_cov:
        inputs["cov"] = cov_path(exp)
    return inputs


def manifest_of(w):
    """The generate manifest an experiment scores: its own, or that of `outputs_from`."""
    exp = EXPERIMENTS[w.experiment]
    return f"results/generate/{exp['outputs_from'] or w.experiment}/manifest.tsv"


def is_t2i(name):
    return EXPERIMENTS[name].model_kind == "t2i"


def default_targets():
    out = []
    for name in config["experiments"]:
        out += [f"results/pareto/{name}.pdf", f"results/pareto/{name}.svg"]
        if is_t2i(name):
            out.append(f"results/pareto/{name}_grid.png")
    return out


def log(rule, pattern):
    return f"logs/{rule}/{pattern}.log"


def bench(rule, pattern):
    return f"results/benchmarks/{rule}/{pattern}.tsv"


# ---- paper figures and tables (rules/paper.smk; added with issue 8)
from steercore.figures.artefacts import ARTEFACT_PATTERN as PAPER_ARTEFACT
from steercore.figures.artefacts import Artefact, paper_artefacts


def paper_inputs(w):
    """The score tables of the experiments that feed the artefact."""
    exps = Artefact.parse(w.artefact).experiments()
    return [f"results/scores/{e.name}/{t}.tsv" for e in exps for t in ("concept_scores", "preservation")]


def paper_targets():
    """Every artefact of the configured experiments (and their models' covariance-size ablations)."""
    try:
        names = paper_artefacts(config["experiments"])
    except SteerError as e:
        sys.exit(f"Steerflow config error: {e}")
    return [f"results/paper/{a}.{s}" for a in names for s in ("pdf", "svg", "tex")]
