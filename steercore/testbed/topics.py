"""The topics world: templated questions and answers on a few topics, each with its own vocabulary.

Topic questions, neutral instructions and answers are functions of a seed. An answer to a topic question uses
only that topic's words plus shared function words, so its topic can be measured exactly (`TopicScorer`).
"""

from __future__ import annotations

import numpy as np

from steercore.core.errors import ConfigError

# Per topic: (nouns, verbs, adjectives); no word belongs to two topics or to FUNCTION_WORDS.
_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "horses": (("horse", "stallion", "mare", "foal", "saddle", "bridle", "hoof", "mane", "stable", "pony",
                "jockey", "hay"),
               ("gallop", "trot", "canter", "ride", "groom", "neigh"),
               ("equine", "swift", "spirited", "chestnut", "majestic", "saddled")),
    "motorcycles": (("motorcycle", "motorbike", "engine", "helmet", "throttle", "exhaust", "clutch", "tire",
                     "chrome", "highway", "biker", "gearbox"),
                    ("accelerate", "rev", "lean", "brake", "cruise", "roar"),
                    ("powerful", "loud", "sporty", "motorized", "leather", "turbocharged")),
    "dogs": (("dog", "puppy", "leash", "bone", "kennel", "collar", "tail", "paw", "terrier", "retriever",
              "biscuit", "doghouse"),
             ("bark", "fetch", "wag", "sniff", "howl", "chew"),
             ("loyal", "playful", "obedient", "canine", "energetic", "friendly")),
    "cats": (("cat", "kitten", "whiskers", "litter", "yarn", "mouse", "claws", "tabby", "catnip", "windowsill",
              "hairball", "scratcher"),
             ("purr", "meow", "pounce", "scratch", "nap", "stretch"),
             ("feline", "curious", "graceful", "sleepy", "independent", "fluffy")),
    "cooking": (("recipe", "oven", "pan", "knife", "onion", "garlic", "sauce", "soup", "flour", "kitchen",
                 "chef", "spice"),
                ("bake", "fry", "boil", "chop", "stir", "simmer"),
                ("delicious", "spicy", "savory", "crispy", "tender", "golden")),
    "weather": (("rain", "storm", "cloud", "wind", "snow", "thunder", "forecast", "sunshine", "fog",
                 "temperature", "hail", "breeze"),
                ("pour", "blow", "freeze", "drizzle", "shine", "melt"),
                ("cloudy", "rainy", "humid", "chilly", "stormy", "sunny")),
    "music": (("guitar", "piano", "melody", "song", "drum", "chord", "rhythm", "concert", "violin", "band",
               "note", "singer"),
              ("sing", "strum", "compose", "perform", "tune", "hum"),
              ("melodic", "harmonic", "acoustic", "musical", "rhythmic", "lyrical")),
    "gardening": (("garden", "seed", "soil", "flower", "tomato", "shovel", "compost", "rose", "weed", "hose",
                   "tulip", "greenhouse"),
                  ("plant", "water", "prune", "dig", "sow", "harvest"),
                  ("blooming", "fertile", "leafy", "organic", "green", "fresh")),
}
TOPICS: tuple[str, ...] = tuple(_WORDS)
#: Each topic's vocabulary: its name, nouns, verbs and adjectives.
TOPIC_VOCABULARY: dict[str, frozenset[str]] = {
    t: frozenset((t, *n, *v, *a)) for t, (n, v, a) in _WORDS.items()}

_QUESTIONS = ("tell me about the {n} .", "what do you know about a {n} ?", "how does a {n} {v} ?",
              "describe a {a} {n} .", "why do people like the {n} ?", "can you explain how to {v} ?",
              "what is special about {t} ?", "tell me something about {t} and the {n} .")
_NEUTRAL = ("write a short sentence .", "tell me something .", "say something nice .", "give me a fact .",
            "write a few words .", "tell me a story .", "share an idea .", "what is on your mind ?",
            "answer with one sentence .", "say anything you like .")
_SENTENCES = ("the {n} is {a} .", "a {a} {n} can {v} with the {n2} .", "people {v} the {n} when it is {a} .",
              "i like to {v} the {a} {n} .", "you can {v} a {n} and {v2} the {n2} .",
              "{t} is about the {n} and the {n2} .", "the {n} and the {n2} are very {a} .")

#: Words that carry no topic: every template word that is not a slot.
FUNCTION_WORDS: frozenset[str] = frozenset(
    w for text in _QUESTIONS + _NEUTRAL + _SENTENCES for w in text.split() if not w.startswith("{")
    and w not in ".?,") | frozenset({"an"})

_overlap = [w for t, v in TOPIC_VOCABULARY.items() for u, x in TOPIC_VOCABULARY.items() if t < u for w in v & x]
assert not _overlap and not FUNCTION_WORDS & frozenset().union(*TOPIC_VOCABULARY.values()), _overlap

#: Every word of the topics world, in a fixed order (the LM tokenizer is built from it).
VOCABULARY: tuple[str, ...] = tuple(sorted(FUNCTION_WORDS)) + tuple(
    w for t in TOPICS for w in sorted(TOPIC_VOCABULARY[t])) + (".", "?")


def _check_topic(topic: str) -> None:
    if topic not in TOPICS:
        raise ConfigError(f"topic {topic!r} is unknown; use one of {', '.join(TOPICS)}")


def _fill(template: str, topic: str, rng: np.random.Generator) -> str:
    nouns, verbs, adjs = _WORDS[topic]
    n, n2 = rng.choice(nouns, 2, replace=False)
    v, v2 = rng.choice(verbs, 2, replace=False)
    return template.format(t=topic, n=n, n2=n2, v=v, v2=v2, a=rng.choice(adjs))


def question(topic: str, rng: np.random.Generator) -> str:
    _check_topic(topic)
    return _fill(_QUESTIONS[rng.integers(len(_QUESTIONS))], topic, rng)


def answer(topic: str, rng: np.random.Generator) -> str:
    """Two or three sentences on `topic`."""
    _check_topic(topic)
    k = int(rng.integers(2, 4))
    return " ".join(_fill(_SENTENCES[i], topic, rng) for i in rng.choice(len(_SENTENCES), k, replace=False))


def dialogue(rng: np.random.Generator, p_neutral: float = 0.2) -> tuple[str, str, str]:
    """(instruction, answer, topic): a topic question, or with p_neutral a neutral instruction answered on a
    random topic."""
    topic = TOPICS[rng.integers(len(TOPICS))]
    if rng.random() < p_neutral:
        return _NEUTRAL[rng.integers(len(_NEUTRAL))], answer(topic, rng), topic
    return question(topic, rng), answer(topic, rng), topic


def topic_questions(topic: str, n: int, seed: int) -> list[str]:
    """n questions about `topic`, deterministic in (topic, n, seed)."""
    _check_topic(topic)
    rng = np.random.default_rng([seed, 2, TOPICS.index(topic)])
    return [question(topic, rng) for _ in range(n)]


def neutral_instructions(n: int, seed: int) -> list[str]:
    """n topic-free instructions, deterministic in (n, seed)."""
    rng = np.random.default_rng([seed, 3])
    return [_NEUTRAL[i] for i in rng.integers(len(_NEUTRAL), size=n)]
