"""Everything a preset will download, known before it starts: models, neutral corpus, scorers' weights.

    python -m steercore.experiments.downloads plan  <preset>...   # list it: repo, files, variant, gated, size, cached
    python -m steercore.experiments.downloads check <preset>...   # exit 1 naming each missing item once
    python -m steercore.experiments.downloads fetch <preset>...   # download only what is missing
    python -m steercore.experiments.downloads table <preset>...   # outputs and GPU memory per preset

Each layer declares its own files (`models.registry.model_downloads`, `scorers.*_downloads`,
`experiments.corpora.corpus_downloads`); this module collects them for the jobs a preset's DAG runs (including
the experiment named by `outputs_from`). `fetch` checks access to every missing gated repository first, so one
run names every licence still to accept; offline it only says what it would fetch. Sizes are approximate
(from parameter counts) offline and exact (the Hub's file metadata) online.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from steercore.core.errors import SteerError
from steercore.hub import Download, check_access, fetch, missing_parts, offline, reachable, hub_host, remote_size
from steercore.experiments.corpora import corpus_downloads
from steercore.experiments.preset import Experiment, load_experiment
from steercore.models.registry import model_downloads, resolve_spec

TEXT_PRESERVATION_BERT = ("bertscore",)


def _scorer_downloads(name: str, judge_model: str | None) -> list[Download]:
    if name == "clip":
        from steercore.scorers.clip_score import clip_downloads

        return clip_downloads()
    if name == "judge":
        from steercore.scorers.judge import DEFAULT_JUDGE, judge_downloads

        return judge_downloads(judge_model or DEFAULT_JUDGE)
    if name == "detoxify":
        from steercore.scorers.toxicity import detoxify_downloads

        return detoxify_downloads()
    return []  # the testbed's scorers ship with steercore


def _model(name: str) -> list[Download]:
    return model_downloads(resolve_spec(name))


def _generation_downloads(exp: Experiment, seen: tuple[str, ...] = ()) -> list[Download]:
    """Statistics and generation: the models and the neutral corpus (those of the experiment whose outputs
    `exp` scores, when it has `outputs_from`)."""
    if exp["outputs_from"]:
        if exp["outputs_from"] in seen:
            return []
        return _generation_downloads(load_experiment(exp["outputs_from"]), (*seen, exp.name))
    return _model(exp["model"]) + _model(exp.stats_model) + (corpus_downloads(exp.corpus) if exp.needs_cov else [])


def experiment_downloads(exp: Experiment) -> list[Download]:
    """What the jobs of `exp` read (generation, statistics, scoring), deduplicated, in order."""
    out = _generation_downloads(exp, (exp.name,))
    scored = dict.fromkeys([*exp.concepts, *exp.test_concepts])
    for scorer in dict.fromkeys(exp.concept_scorer_for(c) for c in scored):
        out += _scorer_downloads(scorer, exp["scorers"]["judge_model"])
    if exp.model_kind == "t2i":
        if exp.preservation in ("fid", "kid") and not exp["model"].startswith("testbed-"):
            from steercore.scorers.fid import inception_downloads

            out += inception_downloads()
    else:
        from steercore.scorers.consistency import consistency_downloads

        out += consistency_downloads(exp.preservation in TEXT_PRESERVATION_BERT)
    return dedupe(out)


def dedupe(downloads: list[Download]) -> list[Download]:
    """One entry per (repository, files): the 'what' of repeated entries are joined."""
    by_key: dict[tuple, Download] = {}
    for d in downloads:
        if d.key in by_key:
            old = by_key[d.key]
            if d.what not in old.what.split("; "):
                by_key[d.key] = replace(old, what=f"{old.what}; {d.what}")
        else:
            by_key[d.key] = d
    return list(by_key.values())


def preset_downloads(names: list[str]) -> list[Download]:
    return dedupe([d for n in names for d in experiment_downloads(load_experiment(n))])


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _online() -> bool:
    return not offline() and reachable(hub_host())


def plan_rows(downloads: list[Download], online: bool) -> list[dict]:
    rows = []
    for d in downloads:
        missing = missing_parts(d)
        size = remote_size(d) if online else None
        rows.append({"what": d.what, "repo": d.name, "type": d.repo_type,
                     "files": ", ".join(d.include) if d.include else ("(file)" if d.repo_type == "url" else "all"),
                     "variant": d.variant or "-", "gated": "gated" if d.gated else "no",
                     "size": _size(size) if size is not None else
                             ("?" if d.size is None else f"{_size(d.size)} (approx)"),
                     "cached": "yes" if not missing else "no: " + ", ".join(missing)})
    return rows


def print_plan(names: list[str], downloads: list[Download], online: bool, file=None) -> None:
    file = file or sys.stdout
    print(f"# {' '.join(names)}: {len(downloads)} downloads ({'sizes from the Hub' if online else 'offline: approximate sizes'})",
          file=file)
    cols = ["what", "repo", "type", "files", "variant", "gated", "size", "cached"]
    print("| " + " | ".join(cols) + " |", file=file)
    print("|" + "---|" * len(cols), file=file)
    for r in plan_rows(downloads, online):
        print("| " + " | ".join(r[c] for c in cols) + " |", file=file)
    known = [d.size for d in downloads if d.size is not None]
    print(f"# total (approx, known sizes only): {_size(sum(known))}", file=file)


def missing_lines(downloads: list[Download]) -> list[str]:
    """One line per download that is not (completely) on this machine, with the command that fetches it."""
    out = []
    for d in downloads:
        parts = missing_parts(d)
        if parts:
            gated = " (gated: accept the licence, set HF_TOKEN)" if d.gated else ""
            out.append(f"missing: {d.name} for {d.what}{gated}: {', '.join(parts)}; fetch with `{d.command()}`")
    return out


# Parameters of the scorers' models (benchmarks/weight_sizes.py) and the dtype they run in on a GPU.
SCORER_MODELS = {"clip": ("CLIP ViT-B-32", 151_277_313, "float32"),
                 "fid": ("Inception-v3", 23_834_568, "float32"), "kid": ("Inception-v3", 23_834_568, "float32"),
                 "detoxify": ("Detoxify bert-base-uncased", 109_486_854, "float32"),
                 "bertscore": ("roberta-large", 355_359_744, "float32"),
                 "consistency": ("all-MiniLM-L6-v2", 22_713_216, "float32")}
JUDGE_PARAMS = {"meta-llama/Llama-3.1-8B-Instruct": 8_030_261_248, "meta-llama/Llama-3.2-3B-Instruct": 3_212_749_824}


_LABEL = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def _gb(params: int | None, dtype: str) -> str:
    from steercore.models.registry import DTYPE_BYTES

    return "?" if params is None else f"{params * DTYPE_BYTES[dtype] / 1e9:.1f} GB"


def preset_summary(exp: Experiment) -> dict:
    """Outputs per condition, total outputs and the models its jobs load with their weights' GPU memory."""
    from steercore.experiments.promptsets import eval_prompts
    from steercore.models.registry import PARAMS

    src = load_experiment(exp["outputs_from"]) if exp["outputs_from"] else exp
    per_condition = sum(len(eval_prompts(src, c)) for c in src.test_concepts) * src["samples_per_prompt"]
    models = []
    if not exp["outputs_from"]:
        for key in dict.fromkeys([exp["model"], exp.stats_model]):
            spec = resolve_spec(key)
            models.append(f"{key} {_gb(PARAMS.get(spec.key), spec.dtype)} {_LABEL[spec.dtype]}")
    scorers = [exp.concept_scorer_for(c) for c in dict.fromkeys([*exp.concepts, *exp.test_concepts])]
    for name in dict.fromkeys(scorers + [exp.preservation] + ([] if exp.model_kind == "t2i" else ["consistency"])):
        if name == "judge":
            judge = exp["scorers"]["judge_model"]
            models.append(f"judge {judge.split('/')[-1]} {_gb(JUDGE_PARAMS.get(judge), 'bfloat16')} bf16")
        elif name in SCORER_MODELS:
            label, n, dtype = SCORER_MODELS[name]
            models.append(f"{label} {_gb(n, dtype)} fp32")
    return {"per_condition": per_condition, "conditions": len(exp.conditions),
            "total": per_condition * len(exp.conditions), "kind": "images" if exp.model_kind == "t2i" else "answers",
            "models": dict.fromkeys(models)}


def print_table(names: list[str], file=None) -> None:
    file = file or sys.stdout
    print("| preset | outputs per condition | conditions | total | models loaded (weights in GPU memory) |", file=file)
    print("|---|---|---|---|---|", file=file)
    for n in names:
        s = preset_summary(load_experiment(n))
        print(f"| `{n}` | {s['per_condition']} | {s['conditions']} | {s['total']:,} {s['kind']} | "
              f"{'; '.join(s['models'])} |", file=file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steercore.experiments.downloads",
                                     description="What a preset downloads: plan (list), check (all cached?), fetch.")
    parser.add_argument("action", choices=["plan", "check", "fetch", "table"])
    parser.add_argument("presets", nargs="+", metavar="preset")
    args = parser.parse_args(argv)
    try:
        if args.action == "table":
            print_table(args.presets)
            return 0
        downloads = preset_downloads(args.presets)
        if args.action == "plan":
            print_plan(args.presets, downloads, _online())
            return 0
        lines = missing_lines(downloads)
        if args.action == "check" or not lines:
            for line in lines:
                print(line)
            print(f"{len(downloads) - len(lines)} of {len(downloads)} downloads of {' '.join(args.presets)} are cached"
                  + ("" if lines else "; nothing to fetch"))
            return 1 if lines else 0
        todo = [d for d in downloads if missing_parts(d)]
        if not _online():
            why = "HF_HUB_OFFLINE is set" if offline() else f"{hub_host()} is unreachable"
            for line in lines:
                print(line.replace("missing:", "would fetch:", 1))
            print(f"{why}: fetched nothing; run this on a machine with network (a login node)")
            return 1
        refused = [(d, why) for d in todo if (why := check_access(d))]
        if refused:  # every access problem in one run, before any download
            for d, why in refused:
                print(f"cannot fetch {d.name} for {d.what}: {why}")
            return 1
        for d in todo:
            print(f"fetching {d.name} ({', '.join(d.include) or 'all files'}) for {d.what}", flush=True)
            fetch(d)
        left = missing_lines(downloads)
        for line in left:
            print(line)
        return 1 if left else 0
    except SteerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
