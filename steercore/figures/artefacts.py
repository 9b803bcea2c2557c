"""Paper artefacts by name: what each figure or table is called, which experiments feed it, its caption.

No drawing here (steercore.figures.render draws), so the workflow can list artefacts at DAG parse time without
loading matplotlib. A paper *artefact* is one figure or table; its name says what it shows and which
experiments feed it (experiment names never contain '-' or '+'):

    table-{exp}[+{exp2}...]            Tables 1–2 style: no steering, then method × strength; per test concept
                                       the source, target and own scores and preservation (one block per exp)
    pareto-{exp}-{x}                   Pareto figure; x = unrelated_preservation (FID or 1 − consistency) or
                                       unrelated_score (the unrelated concepts' own scores)
    response-{exp}-{versus}            the source concept's score on source prompts (95% CI) against strength,
                                       preservation (x of the Pareto figure) or the target's score
    covsize-{family}                   covariance-size ablation over the members of a sweep family that sweeps
                                       cov.samples (config/experiments/{family}.yaml)
    leaderboard-{exp}[+{exp2}...]      a switch's leaderboard (steercore.figures.leaderboard): per method ×
                                       strength, source → target rates, target kept, unrelated unchanged and
                                       preservation; several presets of the same prompts share one (e.g. the
                                       hogs benchmark and its seed on one split). Built by name only.

Families and clip twins come from the presets' declarations (`sweep:`, `twin_of:`), never from their names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from steercore.core.errors import ConfigError
from steercore.experiments.preset import ROOT, Experiment, list_experiments, list_families, load_experiment
from steercore.figures.labels import count_label, experiment_title
from steercore.figures.leaderboard import check_comparable
from steercore.figures.pareto import PARETO_X
from steercore.figures.scores import has_scores

RESPONSE_VERSUS = ("strength", "preservation", "target")
ARTEFACT_SUFFIXES = (".pdf", ".svg", ".tex")
_NAME = r"[A-Za-z0-9_]+"


ARTEFACT_PATTERN = (rf"table-{_NAME}(\+{_NAME})*|pareto-{_NAME}-({'|'.join(PARETO_X)})|"
                    rf"response-{_NAME}-({'|'.join(RESPONSE_VERSUS)})|covsize-{_NAME}|leaderboard-{_NAME}(\+{_NAME})*")


@dataclass(frozen=True)
class Artefact:
    """A paper figure or table, parsed from its name (see the module docstring)."""

    name: str
    kind: str  # table | pareto | response | covsize | leaderboard
    subjects: tuple[str, ...]  # experiments (table, leaderboard: one or more; pareto, response: one) or the covsize family
    option: str | None = None  # the Pareto x axis or the response plot's x

    @classmethod
    def parse(cls, name: str) -> "Artefact":
        if not re.fullmatch(ARTEFACT_PATTERN, name):
            raise ConfigError(f"'{name}' is not a paper artefact; names are table-<exp>[+<exp>...], "
                              f"pareto-<exp>-<{'|'.join(PARETO_X)}>, response-<exp>-<{'|'.join(RESPONSE_VERSUS)}>, "
                              "covsize-<family>, leaderboard-<exp>[+<exp>...]")
        kind, _, rest = name.partition("-")
        if kind in ("table", "leaderboard"):
            return cls(name, kind, tuple(rest.split("+")))
        if kind == "covsize":
            return cls(name, kind, (rest,))
        subject, _, option = rest.partition("-")
        return cls(name, kind, (subject,), option)

    def experiments(self, root: Path = ROOT) -> list[Experiment]:
        """The experiments whose score tables feed this artefact (checked: it applies to them)."""
        if self.kind == "covsize":
            return covsize_family(self.subjects[0], root)
        exps = [load_experiment(s, root) for s in self.subjects]
        if self.kind == "leaderboard":
            check_comparable(exps)
        if self.kind == "response" and self.option == "target" and exps[0]["kind"] != "switch":
            raise ConfigError(f"{self.name}: experiment {exps[0].name} erases a concept; it has no target score "
                              "to plot against (use response-<exp>-strength or -preservation)")
        return exps

    def caption(self, root: Path = ROOT) -> str:
        exps = self.experiments(root)
        exp = exps[0]
        if self.kind == "table":
            return "Concept scores and preservation of " + ", ".join(e.name for e in exps) + "."
        if self.kind == "leaderboard":
            return (f"Leaderboard of {', '.join(e.name for e in exps)}: {exp['source']} → {exp['target']} rates, "
                    f"{exp['target']} kept, unrelated unchanged and preservation, per method and strength.")
        if self.kind == "pareto":
            res_x = "preservation on unrelated prompts" if self.option == "unrelated_preservation" else \
                "the unrelated concepts' own scores"
            return (f"{experiment_title(exp)}. Concept change against {res_x}, every method and strength, the "
                    "strict Pareto frontier (dashed), no steering (star) and the goal (dotted).")
        if self.kind == "response":
            x = {"strength": "strength", "preservation": "preservation on unrelated prompts",
                 "target": f"the {exp['target']} score"}[self.option]
            return f"{experiment_title(exp)}. The {exp['source']} score (mean, 95% CI) against {x}."
        sizes = ", ".join(count_label(e["cov"]["samples"]) for e in exps)
        return (f"Covariance-size ablation ({exp['model']}, N = {sizes} statistics samples): preservation against "
                "concept change for each N and strength.")


def covsize_family(family: str, root: Path = ROOT) -> list[Experiment]:
    """The members of a covariance-size family (a sweep over cov.samples), by increasing cov.samples."""
    families = covsize_families(root)
    if family not in families:
        raise ConfigError(f"no covariance-size family '{family}' (a preset file with sweep: {{cov.samples: [...]}} and no other swept key but cov.shards) "
                          f"in config/experiments/; families: {', '.join(families) or 'none'}")
    members = [load_experiment(n, root) for n in list_families(root)[family].members]
    return sorted(members, key=lambda e: e["cov"]["samples"])


def covsize_families(root: Path = ROOT) -> list[str]:
    """The sweep families that vary cov.samples and nothing else (cov.shards may follow it); a family that also
    varies other settings, such as the ablations', is no covariance-size curve."""
    return sorted(f.name for f in list_families(root).values()
                  if "cov.samples" in f.keys and set(f.keys) <= {"cov.samples", "cov.shards"})


def clip_twin(exp: Experiment, root: Path = ROOT) -> Experiment | None:
    """The declared clip twin of `exp`: the preset it is `twin_of`, or the preset that is `twin_of` it."""
    if exp.twin_of:
        return load_experiment(exp.twin_of, root)
    for name in list_experiments(root):
        if name != exp.name:
            other = load_experiment(name, root)
            if other.twin_of == exp.name:
                return other
    return None


def experiment_artefacts(exp: Experiment, root: Path = ROOT, *, twin: Experiment | None | bool = True) -> list[str]:
    """Every artefact of one experiment: its table (clipping off, then on, with its clip twin: by default the
    twin preset if there is one), both Pareto figures and the response plots."""
    if twin is True:
        twin = clip_twin(exp, root)
    table = ["table-" + "+".join(e.name for e in sorted([exp, twin] if twin else [exp], key=lambda e: e["clip"]))]
    versus = [v for v in RESPONSE_VERSUS if v != "target" or exp["kind"] == "switch"]
    return (table + [f"pareto-{exp.name}-{x}" for x in PARETO_X]
            + [f"response-{exp.name}-{v}" for v in versus])


def paper_artefacts(names: list[str], root: Path = ROOT) -> list[str]:
    """The artefacts of the experiments `names` (e.g. config/config.yaml's list): each experiment's own, and
    the covariance-size ablation of every family that `extends` one of them (testbed_covsize extends
    testbed_red_blue, llama2_covsize llama2_horses_motorcycles, ci_covsize ci)."""
    exps = [load_experiment(n, root) for n in names]
    out = [a for e in exps for a in experiment_artefacts(e, root)]
    families = list_families(root)
    out += [f"covsize-{f}" for f in covsize_families(root) if families[f].extends in names]
    return list(dict.fromkeys(out))


def available_artefacts(root: Path = ROOT, kind: str | None = None) -> list[str]:
    """The artefacts that the results under `root` can render now (every preset with score tables, and every
    covariance-size family with at least two members scored; its members get no artefacts of their own),
    optionally of one kind."""
    families = covsize_families(root)
    members = {e.name for f in families for e in covsize_family(f, root)}
    scored = [load_experiment(n, root) for n in list_experiments(root) if n not in members and has_scores(n, root)]
    out = []
    for exp in scored:
        twin = clip_twin(exp, root)
        out += experiment_artefacts(exp, root, twin=twin if twin and has_scores(twin.name, root) else None)
    for f in families:
        if sum(has_scores(e.name, root) for e in covsize_family(f, root)) >= 2:
            out.append(f"covsize-{f}")
    out = list(dict.fromkeys(out))
    return [a for a in out if kind is None or a.startswith(kind + "-")]

