"""The hogs benchmark: its prompt lists (config/prompts/hogs/), its presets, and the preset keys its seed
configuration needs (cfg_halves, dtype, vectors.seeds_per_prompt, vectors.seed)."""

import re
import shutil

import pytest
import yaml

from steercore import ConfigError
from steercore.experiments.preset import ROOT, Condition, load_experiment
from steercore.experiments.promptsets import eval_prompts, read_lines, vector_prompts

HOGS = ROOT / "config" / "prompts" / "hogs"
KINDS = ("horses", "horses_implicit", "pigs", "unrelated")
HORSE = re.compile(r"\bhorses?\b", re.IGNORECASE)
# words that name a horse or a pig: none may appear in an unrelated prompt
ANIMALS = re.compile(r"\b(horses?|pony|ponies|foals?|stallions?|mares?|colts?|fillies|filly|steeds?|equine|"
                     r"equestrian|pigs?|piglets?|hogs?|boars?|sows?|swine|pork|bacon|oink)\b", re.IGNORECASE)


def split(name: str) -> dict[str, list[str]]:
    return {k: read_lines(HOGS / name / f"{k}.txt") for k in KINDS}


def norm(prompt: str) -> str:
    return " ".join(prompt.lower().split())


def test_prompt_lists_have_the_seeds_size_split_and_kinds():
    public, private = split("public"), split("private")
    assert sum(map(len, public.values())) == 75 and sum(map(len, private.values())) == 107
    assert {k: len(v) for k, v in public.items()} == {"horses": 22, "horses_implicit": 18, "pigs": 17, "unrelated": 18}
    assert {k: len(v) for k, v in private.items()} == {"horses": 31, "horses_implicit": 26, "pigs": 25, "unrelated": 25}
    everything = [norm(p) for s in (public, private) for v in s.values() for p in v]
    assert len(everything) == len(set(everything)) == 182  # no duplicate within or across the splits
    for s in (public, private):
        assert all(HORSE.search(p) for p in s["horses"]), [p for p in s["horses"] if not HORSE.search(p)]
        assert not [p for p in s["horses_implicit"] if HORSE.search(p)]
        assert not [p for p in s["unrelated"] if ANIMALS.search(p)]
        assert not [p for v in s.values() for p in v if "{}" in p]  # literal prompts, no word substitution


def test_vector_style_prompts_are_50_pairs_differing_in_the_concept_word():
    styles = read_lines(HOGS / "vector_styles.txt")
    assert len(styles) == len(set(styles)) == 50 and all(s.endswith(" with {}") and s.count("{}") == 1 for s in styles)


def test_presets_share_a_base_and_state_only_what_differs():
    files = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / "config" / "experiments").glob("hogs_*.yaml")}
    assert set(files) == {"hogs_sd15_public", "hogs_sd15_private", "hogs_sd15_seed_public", "hogs_sd15_seed_private"}
    assert files["hogs_sd15_private"]["extends"] == "hogs_sd15_public"
    assert files["hogs_sd15_seed_public"]["extends"] == "hogs_sd15_public"
    assert files["hogs_sd15_seed_private"]["extends"] == "hogs_sd15_seed_public"
    assert set(files["hogs_sd15_seed_private"]) == {"extends", "description", "prompts"}
    for name in files:
        exp = load_experiment(name)
        which = "private" if name.endswith("private") else "public"
        assert exp.test_concepts == ["horses", "pigs", "unrelated", "horses_implicit"]
        assert [eval_prompts(exp, c) for c in exp.test_concepts] == \
               [split(which)[k] for k in ("horses", "pigs", "unrelated", "horses_implicit")]


def test_the_seed_preset_is_the_submission_configuration():
    exp = load_experiment("hogs_sd15_seed_public")
    assert [c.label for c in exp.conditions] == ["none-0", "casteer-1"]
    assert (exp["model"], exp["seed"], exp["steps"], exp["samples_per_prompt"]) == ("sd15", 42, 50, 1)
    assert (exp["renormalize"], exp["cfg_halves"], exp["dtype"], exp["only_up"]) == (True, "both", "float32", False)
    assert not exp.needs_cov  # CASteer needs no neutral statistics
    for concept, word in (("horses", "horse"), ("pigs", "pig")):
        texts = vector_prompts(exp, concept)
        assert len(texts) == 150 and len(set(texts)) == 50
        assert texts[:4] == [f"photograph with {word}"] * 3 + [f"watercolor painting with {word}"]
    private = load_experiment("hogs_sd15_seed_private")
    assert {k: v for k, v in private.cfg.items() if k not in ("prompts", "description")} == \
           {k: v for k, v in exp.cfg.items() if k not in ("prompts", "description")}


def presets(tmp_path, **extra):
    """A workflow folder with config/ and one preset `p`: the testbed red -> blue switch plus `extra`."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    base = yaml.safe_load((ROOT / "config/experiments/ci.yaml").read_text())
    (tmp_path / "config/experiments/p.yaml").write_text(yaml.safe_dump({**base, **extra}))
    return tmp_path


def test_new_keys_enter_digests_and_ids_only_when_set(tmp_path):
    plain = load_experiment("p", presets(tmp_path / "a"))
    ci = load_experiment("ci")
    assert "dtype" not in plain.cfg and "cfg_halves" not in plain.cfg
    assert (plain.vectors_id(), plain.cov_id()) == (ci.vectors_id(), ci.cov_id())
    base, steered = Condition("none", 0.0), Condition("midsteer", 1.0)
    fp32 = load_experiment("p", presets(tmp_path / "b", dtype="float32"))
    assert fp32.cov_id() == ci.cov_id() + "_float32" and fp32.vectors_id() != ci.vectors_id()
    assert fp32.generation_digest(base) != plain.generation_digest(base)
    both = load_experiment("p", presets(tmp_path / "c", cfg_halves="both"))
    assert both.generation_digest(base) == plain.generation_digest(base)  # the baseline is not steered
    assert both.generation_digest(steered) != plain.generation_digest(steered)
    seeds = load_experiment("p", presets(tmp_path / "d", vectors={"samples": 6, "seeds_per_prompt": 3, "seed": 7}))
    assert seeds.vectors_id() != load_experiment("p", presets(tmp_path / "e", vectors={"samples": 6})).vectors_id()


def test_bad_values_are_one_line(tmp_path):
    for i, (extra, message) in enumerate([({"dtype": "float64"}, "dtype: 'float64' is not allowed"),
                                          ({"cfg_halves": "all"}, "cfg_halves: 'all' is not allowed"),
                                          ({"vectors": {"seeds_per_prompt": 0}}, "vectors.seeds_per_prompt")]):
        with pytest.raises(ConfigError, match=message) as e:
            load_experiment("p", presets(tmp_path / str(i), **extra))
        assert "\n" not in str(e.value)
    lm = yaml.safe_load((ROOT / "config/experiments/testbed_lm_horses_motorcycles.yaml").read_text())
    (tmp_path / "lm").mkdir()
    root = presets(tmp_path / "lm" / "w")
    (root / "config/experiments/lm.yaml").write_text(yaml.safe_dump({**lm, "cfg_halves": "both"}))
    with pytest.raises(ConfigError, match="cfg_halves: testbed-lm is a language model"):
        load_experiment("lm", root)


def test_dtype_reaches_load_model_in_generate_and_statistics(tmp_path, monkeypatch):
    """The preset's dtype is what the generate, cov and vectors stages ask load_model for."""
    import steercore.stages.generate as generate
    import steercore.stages.statistics as statistics
    from steercore.stages.vectors import concept_means

    asked = []

    class Loaded(Exception):
        pass

    def load_model(name, **kw):
        asked.append((name, kw.get("dtype")))
        raise Loaded

    monkeypatch.setattr(generate, "load_model", load_model)
    monkeypatch.setattr(statistics, "load_model", load_model)
    root = presets(tmp_path, dtype="float32")
    monkeypatch.chdir(root)
    exp = load_experiment("p", root)
    with pytest.raises(Loaded):
        generate.generate_unit(exp, [Condition("none", 0.0)], root / "out", root / "m.tsv", device="cpu", root=root)
    with pytest.raises(Loaded):
        concept_means(exp, "red")
    assert asked == [("testbed-t2i", "float32")] * 2


def test_vectors_seeds_per_prompt_gives_each_prompt_consecutive_seeds(tmp_path, monkeypatch):
    import steercore.stages.vectors as vectors

    seen = {}
    monkeypatch.setattr(vectors, "collect",
                        lambda exp, texts, stats, *, seed, **kw: seen.update(texts=texts, seed=seed))
    root = presets(tmp_path, vectors={"prompts": ["a {} circle", "a big {} square"], "samples": 7,
                                      "seeds_per_prompt": 3, "seed": 5})
    vectors.concept_means(load_experiment("p", root), "red")
    # text j is generated with seed 5 + j: "a red circle" with 5, 6, 7; "a big red square" with 8, 9, 10; cycled
    assert seen == {"texts": ["a red circle"] * 3 + ["a big red square"] * 3 + ["a red circle"], "seed": 5}


def test_cfg_halves_reaches_attach_steering_from_the_preset(tmp_path, monkeypatch):
    from contextlib import contextmanager
    from types import SimpleNamespace

    from PIL import Image

    import steercore.stages.generate as generate

    asked = []

    @contextmanager
    def attach_steering(pipe, plan, strength, **kw):
        asked.append(kw.get("cfg_halves"))
        yield

    def pipe(prompt, **kw):
        return SimpleNamespace(images=[Image.new("RGB", (2, 2)) for _ in prompt])

    monkeypatch.setattr(generate, "attach_steering", attach_steering)
    for i, extra in enumerate([{}, {"cfg_halves": "both"}]):
        exp = load_experiment("p", presets(tmp_path / str(i), **extra))
        generate.run_generation(exp, pipe, tmp_path / str(i) / "out", {"casteer": object()}, steps=1, guidance=4.0,
                                conditions=[Condition("casteer", 1.0)], progress=False)
    assert set(asked[:1]) == {"conditional"} and set(asked[1:]) == {"both"} and len(asked) == 2
