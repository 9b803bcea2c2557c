"""The bad-input battery (issue 13): malformed configs, files and API calls, by class of failure.

Every case must raise one user-facing error (a SteerError, or the one-line SystemExit Snakemake prints) whose
message is a single line naming the problem, execute no code from a file, and write nothing to results/.
A few config cases also go through `snakemake -n` in a copy of the workflow (see the end of this file).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from steercore.core.errors import SteerError
from steercore.core.files import FORMAT, load_stats, save_stats
from steercore.core.methods import fit_casteer_add, fit_casteer_remove, fit_leace, fit_method, fit_midsteer
from steercore.core.stats import ActivationStats
from steercore.experiments.corpora import read_corpus_file
from steercore.experiments.preset import ROOT, list_experiments, load_experiment
from steercore.experiments.workflow_config import config_mistakes, load_presets
from steercore.models.registry import load_model
from steercore.scorers.fid import FeatureSet
from steercore.scorers.toxicity import load_checkpoint
from steercore.stages.job import JobDevice, job_device

f64 = torch.float64


@dataclass
class Case:
    klass: int
    """The issue's class of failure (1 code execution … 7 paper preset on a CPU)."""
    name: str
    run: Callable[[Path], object]
    """run(root): the bad call, inside a scratch workflow root (the working directory)."""
    expect: tuple[str, ...]
    """Substrings of the one-line message: what is wrong and where."""


CASES: list[Case] = []


def case(klass: int, name: str, *expect: str):
    def add(fn):
        CASES.append(Case(klass, name, fn, expect))
        return fn

    return add


# ---------------------------------------------------------------------------------------------- helpers


def problem(D=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(200, D, generator=g, dtype=f64)
    mu, sigma = X.mean(0), torch.cov(X.T)
    s, t = mu + torch.randn(D, generator=g, dtype=f64), mu + torch.randn(D, generator=g, dtype=f64)
    return mu, sigma, s, t


def singular_problem(D=6, rank=3, seed=1):
    """Σ of rank 3 (samples in a 3-d subspace) and a source whose offset lies in Σ's null space."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=f64))[0]
    X = torch.randn(500, rank, generator=g, dtype=f64) @ basis[:, :rank].T
    mu, sigma = X.mean(0), torch.cov(X.T)
    return mu, sigma, basis[:, rank:]  # null space [D, D - rank]


def preset(root: Path, name: str = "bad", base: str = "ci", **changes) -> str:
    """Write config/experiments/<name>.yaml: the `base` preset with top-level keys replaced (None deletes)."""
    cfg = yaml.safe_load((root / "config/experiments" / f"{base}.yaml").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (root / "config/experiments" / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return name


def raw_preset(root: Path, text: str, name: str = "bad") -> str:
    (root / "config/experiments" / f"{name}.yaml").write_text(text)
    return name


def load(root: Path, name: str):
    return load_experiment(name, root)


def stats_file(root: Path, mean: torch.Tensor, scatter: torch.Tensor | None = None) -> Path:
    """A statistics file written directly (bypassing save_stats' own checks), as a corrupt job might leave it."""
    D = mean.shape[0]
    tensors = {"up.0@0/n": torch.tensor(10), "up.0@0/mean": mean.contiguous()}
    if scatter is not None:
        tensors["up.0@0/scatter"] = scatter.contiguous()
    meta = {"format": FORMAT, "kind": "neutral" if scatter is not None else "concept",
            "aggregation": "all" if scatter is not None else "average", "sites": f'{{"up.0": {D}}}', "steps": "[0]"}
    path = root / "stats.safetensors"
    save_file(tensors, str(path), metadata=meta)
    return path


class OpensAFile:
    """A pickle payload: unpickling it calls open(marker, 'w'), i.e. runs code chosen by the file's author."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def evil_checkpoint(root: Path, name: str = "evil.ckpt") -> Path:
    path = root / name
    torch.save({"config": {}, "state_dict": {}, "x": OpensAFile(root / "PWNED")}, path)
    return path


def renamed_with_own_hash(path: Path, stem: str = "toxic_tiny") -> Path:
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return path.rename(path.parent / f"{stem}-{digest[:8]}.ckpt")


# ---------------------------------------------------------------------------------------------- 1. code execution


@case(1, "pickle payload in a checkpoint", "refusing to unpickle")
def _(root):
    load_checkpoint(evil_checkpoint(root))


@case(1, "payload named with its own sha256 prefix", "refusing to unpickle")
def _(root):
    load_checkpoint(renamed_with_own_hash(evil_checkpoint(root)))


@case(1, "payload with a 64-hex name (its full sha256)", "refusing to unpickle")
def _(root):
    import hashlib

    path = evil_checkpoint(root)
    load_checkpoint(path.rename(root / f"toxic-{hashlib.sha256(path.read_bytes()).hexdigest()}.ckpt"))


@case(1, "payload named as the official Detoxify file", "refusing to unpickle")
def _(root):
    load_checkpoint(evil_checkpoint(root, "toxic_original-c1212f89.ckpt"))


@case(1, "pickled object that is no payload", "refusing to unpickle")
def _(root):
    import argparse

    torch.save({"config": {}, "state_dict": {}, "args": argparse.Namespace(x=1)}, root / "ns.ckpt")
    load_checkpoint(root / "ns.ckpt")


@case(1, "pickle renamed as a statistics file", "not a readable safetensors file")
def _(root):
    torch.save({"x": OpensAFile(root / "PWNED")}, root / "stats.safetensors")
    load_stats(root / "stats.safetensors")


@case(1, "FID reference .npz with a pickled object array", "not a reference statistics file")
def _(root):
    np.savez(root / "ref.npz", mu=np.array([OpensAFile(root / "PWNED")], dtype=object), sigma=np.eye(2))
    FeatureSet.load(root / "ref.npz")


@case(1, "garbage checkpoint", "weights_only=True", "refusing to unpickle")
def _(root):
    (root / "junk.ckpt").write_bytes(b"\x80\x04not a pickle at all")
    load_checkpoint(root / "junk.ckpt")


# ---------------------------------------------------------------------------------------------- 2. non-finite numbers


@case(2, "NaN in the source mean", "source mean", "non-finite", "NaN")
def _(root):
    mu, sigma, s, t = problem()
    s[2] = math.nan
    fit_method("midsteer", source=s, target=t, mu=mu, sigma=sigma)


@case(2, "inf in the neutral mean", "neutral mean", "non-finite")
def _(root):
    mu, sigma, s, t = problem()
    mu[0] = math.inf
    fit_method("leace", source=s, target=t, mu=mu, sigma=sigma)


@case(2, "NaN in Σ", "covariance", "non-finite")
def _(root):
    mu, sigma, s, t = problem()
    sigma[1, 1] = math.nan
    fit_method("midsteer", source=s, target=t, mu=mu, sigma=sigma)


@case(2, "-inf in the target mean (CASteer)", "target mean", "non-finite")
def _(root):
    mu, sigma, s, t = problem()
    t[3] = -math.inf
    fit_method("casteer", source=s, target=t)


@case(2, "NaN in the positive mean (CASteer-add)", "positive mean", "non-finite")
def _(root):
    mu, sigma, s, t = problem()
    fit_casteer_add(torch.full_like(s, math.nan), t)


@case(2, "NaN strength", "strength", "finite")
def _(root):
    mu, sigma, s, t = problem()
    fit_method("casteer", source=s, target=t)(torch.randn(2, 6, dtype=f64), math.nan)


@case(2, "inf in a per-sample strength", "strength", "finite")
def _(root):
    mu, sigma, s, t = problem()
    m = fit_method("leace", source=s, target=t, mu=mu, sigma=sigma)
    m(torch.randn(2, 6, dtype=f64), torch.tensor([1.0, math.inf]))


@case(2, "NaN mean in a statistics file", "up.0@0/mean", "non-finite")
def _(root):
    mean = torch.zeros(4, dtype=f64)
    mean[1] = math.nan
    load_stats(stats_file(root, mean))


@case(2, "inf scatter in a statistics file", "up.0@0/scatter", "non-finite")
def _(root):
    scatter = torch.eye(4, dtype=f64)
    scatter[2, 3] = math.inf
    load_stats(stats_file(root, torch.zeros(4, dtype=f64), scatter))


@case(2, "non-finite activations are not saved", "up.0@0/mean", "not finite")
def _(root):
    stats = ActivationStats("neutral", "all")
    x = torch.randn(1, 5, 4)
    x[0, 0, 0] = math.nan
    stats.add(step=0, site="up.0", x=x)
    save_stats(stats, root / "out.safetensors")


@case(2, "strengths: [.nan] in a preset", "strengths.0", "not a finite number")
def _(root):
    load(root, raw_preset(root, (root / "config/experiments/ci.yaml").read_text().replace("[1, 2]", "[.nan, 1]")))


@case(2, "strengths: [.inf] in a preset", "strengths.1", "not a finite number")
def _(root):
    load(root, raw_preset(root, (root / "config/experiments/ci.yaml").read_text().replace("[1, 2]", "[1, .inf]")))


@case(2, "guidance: .nan in a preset", "guidance", "not a finite number")
def _(root):
    load(root, raw_preset(root, (root / "config/experiments/ci.yaml").read_text() + "guidance: .nan\n"))


@case(2, "temperature: -.inf in a preset", "temperature", "not a finite number")
def _(root):
    load(root, raw_preset(root, (root / "config/experiments/testbed_lm_horses_motorcycles.yaml").read_text()
                          + "temperature: -.inf\n"))


@case(2, "threads: .inf in config.yaml", "config/config.yaml", "threads", "not a finite number")
def _(root):
    raise_mistakes({"experiments": ["ci"], "device": "auto", "threads": math.inf})


# ---------------------------------------------------------------------------------------------- 3. degenerate directions


@case(3, "MidSteer source offset in the null space of a singular Σ", "midsteer", "outside the support of Σ")
def _(root):
    mu, sigma, null = singular_problem()
    fit_midsteer(mu + 3 * null[:, 0], mu, sigma, mu + 3 * null[:, 0] + 1e-3 * sigma[0])


@case(3, "LEACE direction in the null space of a singular Σ", "leace", "outside the support of Σ")
def _(root):
    mu, sigma, null = singular_problem()
    fit_leace(mu + 2 * null[:, 1], mu, sigma)


@case(3, "MidSteer erasure along a null direction", "midsteer", "outside the support of Σ")
def _(root):
    mu, sigma, null = singular_problem(D=8, rank=2)
    fit_midsteer(mu + null[:, 0] - null[:, 3], mu, sigma)


@case(3, "MidSteer with source == target", "midsteer", "identical", "direction is zero")
def _(root):
    mu, sigma, s, _ = problem()
    fit_midsteer(s, mu, sigma, s.clone())


@case(3, "LEACE with source == target", "leace", "identical")
def _(root):
    mu, sigma, s, _ = problem()
    fit_leace(s, mu, sigma, s.clone())


@case(3, "CASteer with source == target", "casteer", "identical")
def _(root):
    mu, sigma, s, _ = problem()
    fit_casteer_remove(s, s.clone())


@case(3, "CASteer-add with positive == negative", "casteer_add", "identical")
def _(root):
    mu, sigma, s, _ = problem()
    fit_casteer_add(s, s.clone())


@case(3, "means that differ only by round-off", "midsteer", "identical")
def _(root):
    mu, sigma, s, _ = problem()
    fit_midsteer(s, mu, sigma, s * (1 + 1e-13))


@case(3, "MidSteer erasure of a source equal to μ", "midsteer", "neutral mean μ", "identical")
def _(root):
    mu, sigma, s, _ = problem()
    fit_midsteer(mu.clone(), mu, sigma)


@case(3, "MidSteer switch with the source at μ", "midsteer", "source mean and the neutral mean μ are identical")
def _(root):
    mu, sigma, s, t = problem()
    fit_midsteer(mu.clone(), mu, sigma, t)


@case(3, "CASteer erasure of a zero source", "casteer", "zero vector")
def _(root):
    fit_casteer_remove(torch.zeros(5, dtype=f64))


@case(3, "Σ with a negative eigenvalue", "not positive semi-definite")
def _(root):
    mu, sigma, s, t = problem()
    fit_leace(s, mu, sigma - 2 * torch.linalg.eigvalsh(sigma)[-1] * torch.eye(6, dtype=f64) * 0.3, t)


@case(3, "asymmetric Σ", "not symmetric")
def _(root):
    mu, sigma, s, t = problem()
    sigma[0, 1] += 1.0
    fit_midsteer(s, mu, sigma, t)


@case(3, "zero Σ", "covariance Σ is zero")
def _(root):
    mu, sigma, s, t = problem()
    fit_midsteer(s, mu, torch.zeros_like(sigma), t)


# ---------------------------------------------------------------------------------------------- 4. checks that came too late


def prompt_preset(root: Path, text: bytes, key: str = "source") -> str:
    (root / "config/prompts/bad.txt").write_bytes(text)
    cfg = yaml.safe_load((root / "config/experiments/ci.yaml").read_text())
    cfg["prompts"][key] = {"file": "config/prompts/bad.txt"}
    return preset(root, prompts=cfg["prompts"])


@case(4, "source == target in a preset", "target", "'red' is the source concept too")
def _(root):
    load(root, preset(root, target="red"))


@case(4, "target word equal to the source word", "target", "is the source concept too")
def _(root):
    load(root, preset(root, target="crimson", words={"crimson": "red"}))


@case(4, "empty prompt file", "prompts.source", "holds no prompts")
def _(root):
    load(root, prompt_preset(root, b""))


@case(4, "comment-only prompt file", "prompts.target", "holds no prompts")
def _(root):
    load(root, prompt_preset(root, b"# just a comment\n\n   \n# another\n", key="target"))


@case(4, "prompt file that is not UTF-8", "prompts.source", "not UTF-8", "line 2")
def _(root):
    load(root, prompt_preset(root, b"a red circle\na caf\xe9 in red\n"))


@case(4, "empty vector-prompt file", "vectors.prompts", "holds no prompts")
def _(root):
    (root / "config/prompts/bad.txt").write_text("# nothing\n")
    load(root, preset(root, vectors={"samples": 32, "prompts": {"file": "config/prompts/bad.txt"}}))


@case(4, "unrelated prompt file missing", "prompts.unrelated.green", "does not exist")
def _(root):
    load(root, preset(root, prompts={"source": ["a red circle"], "target": ["a blue circle"],
                                     "unrelated": {"green": {"file": "config/prompts/none.txt"}}}))


@case(4, "text scorer on an image model", "scorers.concept", "'judge' scores texts", "images")
def _(root):
    load(root, preset(root, scorers={"concept": "judge"}))


@case(4, "image scorer on a language model", "scorers.concept", "'clip' scores images")
def _(root):
    load(root, preset(root, base="testbed_lm_horses_motorcycles", scorers={"concept": "clip"}))


@case(4, "text scorer for one concept of an image model", "scorers.concept", "'detoxify' scores texts")
def _(root):
    load(root, preset(root, scorers={"concept": {"default": "testbed-clip", "blue": "detoxify"}}))


@case(4, "image preservation on a language model", "scorers.preservation", "'fid'")
def _(root):
    load(root, preset(root, base="testbed_lm_horses_motorcycles", scorers={"preservation": "fid"}))


@case(4, "corpus file with too few texts", "cov.samples", "holds 2 texts")
def _(root):
    (root / "config/corpus.txt").write_text("one\ntwo\n")
    load(root, preset(root, cov={"samples": 64, "corpus": "file:config/corpus.txt"}))


@case(4, "corpus file that is not UTF-8", "cov.corpus", "not UTF-8")
def _(root):
    (root / "config/corpus.txt").write_bytes(b"\xff\xfe bad bytes\n" * 80)
    load(root, preset(root, cov={"samples": 64, "corpus": "file:config/corpus.txt"}))


@case(4, "corpus .jsonl with a broken line", "line 2", "not valid JSON")
def _(root):
    (root / "c.jsonl").write_text('"fine"\n{"instruction": \n')
    read_corpus_file(root / "c.jsonl")


@case(4, "empty corpus file", "holds no texts")
def _(root):
    (root / "c.txt").write_text("\n\n")
    read_corpus_file(root / "c.txt")


@case(4, "device torch cannot use: cuda without a GPU", "device", "'cuda'", "no usable CUDA GPU")
def _(root):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with job_device("cuda"):
        pass


@case(4, "device cuda:7 (no such GPU)", "device", "'cuda:7'")
def _(root):
    with job_device("cuda:7"):
        pass


@case(4, "device mps without an Apple GPU", "device", "'mps'")
def _(root):
    if torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple GPU")
    with job_device("mps"):
        pass


@case(4, "device string torch cannot parse", "device", "'gpu0' is not a torch device")
def _(root):
    with job_device("gpu0"):
        pass


@case(4, "device with an unknown type", "device", "'xla' is not")
def _(root):
    with job_device("xla"):
        pass


# ---------------------------------------------------------------------------------------------- 5. unclear messages


def raise_mistakes(config: dict):
    mistakes = config_mistakes(config)
    assert len(mistakes) == 1, mistakes
    raise SteerError(mistakes[0])


@case(5, "a mistake in an extended preset", "config/experiments/testbed_red_blue.yaml: strengths.casteer.4: nan")
def _(root):
    """The file that wrote the value is named, not the first preset inheriting it (testbed_circle_square)."""
    strengths = yaml.safe_load((root / "config/experiments/testbed_red_blue.yaml").read_text())["strengths"]
    preset(root, "testbed_red_blue", "testbed_red_blue", strengths={**strengths, "casteer": [0.75, 1, 1.5, 2, math.nan]})
    load_experiment("testbed_circle_square", root)


@case(5, "threads: 0", "config/config.yaml", "threads", "minimum of 1")
def _(root):
    raise_mistakes({"experiments": ["ci"], "device": "auto", "threads": 0})


@case(5, "threads: two", "threads", "'two' is not of type 'integer'")
def _(root):
    raise_mistakes({"experiments": ["ci"], "threads": "two"})


@case(5, "unknown key in config.yaml", "config/config.yaml", "'thread' was unexpected")
def _(root):
    raise_mistakes({"experiments": ["ci"], "thread": 2})


@case(5, "experiments: []", "experiments", "should be non-empty")
def _(root):
    raise_mistakes({"experiments": []})


@case(5, "experiments listed twice", "experiments", "non-unique")
def _(root):
    raise_mistakes({"experiments": ["ci", "ci"]})


@case(5, "unknown experiment in config.yaml", "config/config.yaml", "unknown experiment 'nope'")
def _(root):
    load_presets(["ci", "nope"])


@case(5, "YAML syntax error: line and column", "bad.yaml", "line 4, column 7", "not valid YAML")
def _(root):
    load(root, raw_preset(root, "model: testbed-t2i\nkind: switch\nsource: [red\ntarget: blue\n"))


@case(5, "YAML tab indentation", "bad.yaml", "line 2", "not valid YAML")
def _(root):
    load(root, raw_preset(root, "model: testbed-t2i\n\tkind: switch\n"))


@case(5, "empty preset file", "bad.yaml", "the file is empty")
def _(root):
    load(root, raw_preset(root, ""))


@case(5, "preset that is a list", "bad.yaml", "expected a mapping")
def _(root):
    load(root, raw_preset(root, "- model\n- kind\n"))


@case(5, "preset not UTF-8", "bad.yaml", "not UTF-8")
def _(root):
    (root / "config/experiments/bad.yaml").write_bytes(b"model: testbed-t2i\ndescription: caf\xe9\n")
    load(root, "bad")


@case(5, "string strength to a map", "strength must be a number", "str '2'")
def _(root):
    mu, sigma, s, t = problem()
    fit_method("casteer", source=s, target=t)(torch.randn(2, 6, dtype=f64), "2")


@case(5, "None strength to a map", "strength must be a number", "NoneType")
def _(root):
    mu, sigma, s, t = problem()
    fit_method("midsteer", source=s, target=t, mu=mu, sigma=sigma)(torch.randn(2, 6, dtype=f64), None)


@case(5, "boolean tensor strength", "strength", "torch.bool")
def _(root):
    mu, sigma, s, t = problem()
    fit_method("casteer", source=s, target=t)(torch.randn(2, 6, dtype=f64), torch.tensor([True, False]))


@case(5, "a string as the source mean", "source mean must be a float tensor", "str")
def _(root):
    fit_method("casteer", source="dog", target=torch.ones(3))


@case(5, "unknown method", "unknown steering method 'midsteeer'", "midsteer")
def _(root):
    mu, sigma, s, t = problem()
    fit_method("midsteeer", source=s, target=t)


@case(5, "unknown preset by name", "unknown experiment 'nosuch'")
def _(root):
    load(root, "nosuch")


@case(5, "a target that names no preset", "no experiment preset 'typo'")
def _(root):
    load_presets(["ci"])["typo"]


@case(5, "statistics of the wrong kind", "holds concept statistics, expected neutral")
def _(root):
    load_stats(stats_file(root, torch.zeros(4, dtype=f64)), kind="neutral")


@case(5, "a missing statistics file", "no such statistics file")
def _(root):
    load_stats(root / "nothing.safetensors")


# ---------------------------------------------------------------------------------------------- 6. names and device strings


@case(6, "device with ';' (a second shell command)", "device", "'cuda;touch PWNED' is not a device")
def _(root):
    raise_mistakes({"experiments": ["ci"], "device": "cuda;touch PWNED"})


@case(6, "device with $(...)", "device", "is not a device")
def _(root):
    raise_mistakes({"experiments": ["ci"], "device": "$(touch PWNED)"})


@case(6, "device with a space", "device", "'cpu && touch PWNED' is not a device")
def _(root):
    raise_mistakes({"experiments": ["ci"], "device": "cpu && touch PWNED"})


@case(6, "device that is a number", "device", "is not of type 'string'")
def _(root):
    raise_mistakes({"experiments": ["ci"], "device": 0})


@case(6, "experiment name with a space in config.yaml", "experiments.0", "'my exp' may contain only letters")
def _(root):
    raise_mistakes({"experiments": ["my exp"]})


@case(6, "experiment name with ';' in config.yaml", "experiments.1", "may contain only letters")
def _(root):
    raise_mistakes({"experiments": ["ci", "ci;touch PWNED"]})


@case(6, "preset file with a space", "config/experiments/my exp.yaml", "rename the file")
def _(root):
    shutil.copy(root / "config/experiments/ci.yaml", root / "config/experiments/my exp.yaml")
    list_experiments(root)


@case(6, "preset file with a hyphen", "config/experiments/red-blue.yaml", "no spaces, hyphens or dots")
def _(root):
    shutil.copy(root / "config/experiments/ci.yaml", root / "config/experiments/red-blue.yaml")
    list_experiments(root)


@case(6, "preset file with a dot in its name", "config/experiments/ci.v2.yaml", "rename the file")
def _(root):
    shutil.copy(root / "config/experiments/ci.yaml", root / "config/experiments/ci.v2.yaml")
    list_experiments(root)


@case(6, "preset with .yml suffix", "config/experiments/ci2.yml", "rename it to ci2.yaml")
def _(root):
    shutil.copy(root / "config/experiments/ci.yaml", root / "config/experiments/ci2.yml")
    list_experiments(root)


@case(6, "a preset loaded by a path with a space", "may contain only letters")
def _(root):
    shutil.copy(root / "config/experiments/ci.yaml", root / "my exp.yaml")
    load_experiment(root / "my exp.yaml", root)


@case(6, "source concept with a shell character", "source", "may contain only letters")
def _(root):
    load(root, preset(root, source="red;ls"))


@case(6, "unrelated concept with a slash", "prompts.unrelated", "'../green' may contain only letters")
def _(root):
    load(root, preset(root, prompts={"source": ["a"], "target": ["b"], "unrelated": {"../green": ["c"]}}))


# ---------------------------------------------------------------------------------------------- 7. paper models on a CPU


def cpu_auto() -> JobDevice:
    """What job_device('auto') yields on a machine without a GPU."""
    return JobDevice("cpu", "auto")


@case(7, "SDXL with device: auto on a CPU machine", "model sdxl would run on the CPU", "device: cpu")
def _(root):
    load_model("sdxl", device=cpu_auto(), local_dir=root)


@case(7, "Llama-2 with no device given, on a CPU", "model llama2-7b-chat would run on the CPU")
def _(root):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    load_model("llama2-7b-chat", local_dir=root)


@case(7, "FLUX with device: auto on a CPU machine", "model flux would run on the CPU")
def _(root):
    load_model("flux", device=cpu_auto(), local_dir=root)


@case(7, "SANA with device: auto on a CPU machine", "model sana would run on the CPU")
def _(root):
    load_model("sana", device=cpu_auto(), local_dir=root)


@case(7, "a local pipeline folder with device: auto on a CPU", "would run on the CPU")
def _(root):
    (root / "pipe").mkdir()
    (root / "pipe/model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    load_model(str(root / "pipe"), device=cpu_auto())


@case(7, "Qwen with device: auto on a CPU machine", "model qwen2.5-7b would run on the CPU")
def _(root):
    load_model("qwen2.5-7b", device=cpu_auto(), local_dir=root)


# ---------------------------------------------------------------------------------------------- the battery


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A scratch workflow root with its own config/, as the working directory (results/ would land here)."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_battery_has_at_least_80_cases_and_5_per_class():
    counts = {k: sum(c.klass == k for c in CASES) for k in range(1, 8)}
    assert sum(counts.values()) >= 80 and min(counts.values()) >= 5, counts
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=[f"{c.klass}-{c.name}" for c in CASES])
def test_bad_input_gives_one_line_naming_the_problem(c: Case, root: Path):
    with pytest.raises((SteerError, SystemExit)) as err:
        c.run(root)
    message = str(err.value.code if isinstance(err.value, SystemExit) else err.value)
    assert "\n" not in message and "Traceback" not in message, message
    for part in c.expect:
        assert part in message, (part, message)
    assert not (root / "results").exists()
    assert not (root / "PWNED").exists()  # no pickle payload and no shell text ran


# ---------------------------------------------------------------------------------------------- through snakemake -n

PARTS = ("Snakefile", "rules", "config", "report", "profiles", "envs", "workflow_scripts")


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    dest = tmp_path_factory.mktemp("workflow")
    for part in PARTS:
        subprocess.run(["cp", "-r", str(ROOT / part), str(dest / part)], check=True)
    return dest


def dry_run(wf: Path, *args) -> list[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "-n", *args], cwd=wf, env=env,
                         capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert "Traceback" not in out and "Exception" not in out, out[-3000:]
    assert not (wf / "results").exists() and not (wf / "PWNED").exists()
    return [ln for ln in out.splitlines() if "error" in ln.lower()]


SNAKEMAKE_CASES = {
    "threads-0": (["--config", "threads=0"], ["config/config.yaml: threads: 0 is less than the minimum of 1"]),
    "device-injection": (["--config", "device=cuda;touch PWNED", "threads=0"],
                         ["config/config.yaml: threads: 0", "config/config.yaml: device: 'cuda;touch PWNED' is not"]),
    "no-such-preset": (["results/pareto/typo.pdf"], ["no experiment preset 'typo'"]),
    "artefact-typo": (["--config", "artefacts=[tabel-ci]"], ["artefacts: 'tabel-ci' is not a paper artefact"]),
    "artefact-no-family": (["--config", "artefacts=[covsize-nope]"],
                           ["artefacts: no covariance-size family 'nope'"]),
    "artefact-not-comparable": (["--config", "artefacts=[leaderboard-ci+sdxl_dogs_cats]"],
                                ["artefacts: leaderboard: experiments ci and sdxl_dogs_cats differ in"]),
    "artefacts-not-a-list": (["--config", "artefacts=table-ci"], ["artefacts: 'table-ci' is not of type 'array'"]),
}


@pytest.mark.parametrize("name", list(SNAKEMAKE_CASES))
def test_bad_config_stops_the_dry_run_with_one_line_each(workflow, name):
    args, expected = SNAKEMAKE_CASES[name]
    errors = dry_run(workflow, *args)
    assert len(errors) == len(expected), errors
    for line, part in zip(errors, expected):
        assert line.startswith("Steerflow config error: ") and part in line, (line, part)


def test_bad_preset_files_stop_the_dry_run(workflow):
    exps = workflow / "config/experiments"
    bad = exps / "red-blue.yaml"
    shutil.copy(exps / "ci.yaml", bad)
    try:
        assert dry_run(workflow, "results/pareto/ci.pdf") == [
            "Steerflow config error: config/experiments/red-blue.yaml: experiment name 'red-blue' may contain only "
            "letters, digits and _ (no spaces, hyphens or dots); rename the file"]
    finally:
        bad.unlink()
    prompts = workflow / "config/prompts/empty.txt"
    prompts.write_text("# to do\n")
    ci = (exps / "ci.yaml").read_text()
    try:
        (exps / "ci.yaml").write_text(ci.replace("source: {generator: testbed-shapes, n: 2}",
                                                 "source: {file: config/prompts/empty.txt}"))
        [line] = dry_run(workflow, "results/pareto/ci.pdf")
        assert "config/experiments/ci.yaml: prompts.source: prompt file 'config/prompts/empty.txt' holds no prompts" in line
    finally:
        (exps / "ci.yaml").write_text(ci)
