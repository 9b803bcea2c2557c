"""The job-log summary of plan diagnostics: the spread over sites, and one warning line above warn_move."""

import math

from steercore.core.plan import MapDiagnostics
from steercore.stages.vectors import diagnostic_rows, summarize
from steercore.tables import DIAGNOSTICS


def diag(site, move, cond=1e3):
    return MapDiagnostics(0, site, 64, 512, cond, 12.5, 2.0, move, 2 * move, 245)


def test_summary_warns_in_one_line_only_above_the_threshold():
    diags = [diag("layers.0.self_attn", 0.1), diag("layers.3.self_attn", 0.62, cond=4e5)]
    lines = summarize("leace", diags, warn_move=0.5)
    assert len(lines) == 2
    assert "Σ condition number 1e+03–4e+05" in lines[0] and "mean ≤ 0.62" in lines[0] and "245 held-out rows" in lines[0]
    assert lines[1].startswith("WARNING leace: at β 1 the map of site layers.3.self_attn (step 0) moves held-out "
                               "neutral activations by 62% of their norm") and "\n" not in lines[1]
    assert len(summarize("leace", diags, warn_move=0.7)) == 1


def test_rows_follow_the_schema_and_leave_sigma_columns_empty_without_sigma():
    rows = diagnostic_rows("casteer", [MapDiagnostics(0, "up.0", 8, None, None, None, 1.0, math.nan, math.nan, 0)],
                           "none")
    assert len(rows[0]) == len(DIAGNOSTICS)
    row = dict(zip(DIAGNOSTICS, rows[0]))
    assert row["samples"] == row["condition_number"] == row["regularize"] == "" and row["u_norm"] == "1"
    assert summarize("casteer", [MapDiagnostics(0, "up.0", 8, None, None, None, 1.0, math.nan, math.nan, 0)], 0.5) == \
        ["diagnostics casteer: 1 maps, ‖u‖ 1–1"]
