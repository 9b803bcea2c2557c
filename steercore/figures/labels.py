"""Words on figures and tables: method and metric names, titles, counts, LaTeX escaping (no matplotlib)."""

from __future__ import annotations

from steercore.core.methods import METHODS
from steercore.experiments.preset import Experiment

PRESERVATION_NAME = {"fid": "FID", "kid": "KID", "consistency": "Cons.", "bleu": "BLEU", "bert_precision": "BERT-P",
                     "bert_recall": "BERT-R", "bert_f1": "BERT-F1"}


def method_name(method: str) -> str:
    return "No steering" if method == "none" else METHODS[method].label if method in METHODS else method


def experiment_title(exp: Experiment) -> str:
    what = f"{exp['source']} → {exp['target']}" if exp["kind"] == "switch" else f"erase {exp['source']}"
    clip = ", clipping" if exp["clip"] else ""
    return f"{exp.name}: {exp['model']}, {what}{clip}"


def count_label(n: int) -> str:
    """10000 → '10k'."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def tex(text: str) -> str:
    return text.replace("_", "\\_").replace("%", "\\%").replace("&", "\\&").replace("→", "$\\to$") \
               .replace("×", "$\\times$").replace("−", "$-$")
