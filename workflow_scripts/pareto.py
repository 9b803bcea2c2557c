"""pareto rule: Pareto plot (PDF and SVG), the points with their frontier flags (TSV), a LaTeX table."""

import warm

warm.start()  # forked from this run's warm server, if it has one (warm.py)

from pathlib import Path

from steercore.stages.job import job_experiment, main_guard, preset_parser
from steercore.stages.pareto import render_experiment_pareto


@main_guard
def main():
    p = preset_parser(__doc__)
    p.add_argument("--concept", required=True, type=Path, help="concept_scores.tsv")
    p.add_argument("--preservation", required=True, type=Path, help="preservation.tsv")
    p.add_argument("--pdf", required=True, type=Path)
    p.add_argument("--svg", required=True, type=Path)
    p.add_argument("--points", required=True, type=Path)
    p.add_argument("--table", required=True, type=Path)
    a = p.parse_args()
    exp = job_experiment(a)
    result = render_experiment_pareto(exp, a.concept, a.preservation, figures=[a.pdf, a.svg], points=a.points,
                                      table=a.table)
    for pt in [result.baseline, *result.points]:
        print(f"{pt.method:>12} {pt.strength:4g}  x={pt.x:.4f}  y={pt.y:.4f}{'  frontier' if pt.frontier else ''}")
    print(f"goal y={result.goal:.4f}")


if __name__ == "__main__":
    main()
