"""gather rules: an experiment's manifest, or its score tables, from the tables of its per-job outputs."""

import warm

warm.start()  # forked from this run's warm server, if it has one (warm.py)

from pathlib import Path

from steercore.stages.job import job_experiment, main_guard, preset_parser
from steercore.stages.gather import gather_manifest, gather_scores


@main_guard
def main():
    p = preset_parser(__doc__)
    p.add_argument("what", choices=["manifest", "scores"])
    p.add_argument("--manifests", type=Path, nargs="+", help="manifest: the generate jobs' manifests")
    p.add_argument("--out", type=Path, help="manifest: the experiment's manifest")
    p.add_argument("--items", type=Path, nargs="+", help="scores: the score jobs' items.tsv")
    p.add_argument("--preservation", type=Path, nargs="+", help="scores: the score jobs' preservation.tsv")
    p.add_argument("--items-out", type=Path)
    p.add_argument("--concept-out", type=Path)
    p.add_argument("--preservation-out", type=Path)
    a = p.parse_args()
    exp = job_experiment(a)
    if a.what == "manifest":
        if not a.manifests or not a.out:
            p.error("manifest needs --manifests and --out")
        print(f"{gather_manifest(exp, a.manifests, a.out)} outputs listed in {a.out}")
    else:
        if not (a.items and a.preservation and a.items_out and a.concept_out and a.preservation_out):
            p.error("scores needs --items, --preservation, --items-out, --concept-out and --preservation-out")
        n = gather_scores(exp, a.items, a.preservation, items_out=a.items_out, concept_out=a.concept_out,
                          preservation_out=a.preservation_out)
        print(f"wrote {n[0]} per-output scores, {n[1]} concept-score rows and {n[2]} preservation rows")


if __name__ == "__main__":
    main()
