"""Scorers of the score stage: CLIP concept score, FID/KID, Detoxify toxicity, LLM judge, consistency.

Concept scorers share `score(items, concept) -> list[float]` (one value per item, in order); each has a
batch size, a progress bar, automatic device choice (`device=` overrides), weights from the Hub or a local
path, and a TSV header for its per-item rows (`write_tsv`). Heavy libraries load only when a scorer is built.
"""

from .clip_score import ClipScorer, load_clip
from .common import choose_device, write_tsv
from .consistency import Consistency, bleu
from .fid import TSV_HEADER as FID_TSV_HEADER
from .fid import FeatureSet, fid, fid_row, folder_features, kid, reference_statistics
from .judge import Judge
from .toxicity import Toxicity, load_rtp_subset

__all__ = [
    "ClipScorer", "load_clip", "choose_device", "write_tsv", "Consistency", "bleu", "FID_TSV_HEADER",
    "FeatureSet", "fid", "fid_row", "folder_features", "kid", "reference_statistics", "Judge", "Toxicity",
    "load_rtp_subset",
]
