"""Seven synthetic personas (docs/method.md, section 4, task 2): a seeded generator of users.

A persona is a (language style, music genre) pair with a share of the population (config
``personas.definitions``). Each user gets a profile of a few past messages written in the
persona's style about the persona's genre, except that each message, with probability
``profile_noise``, is written by another persona instead, so that clustering the profiles is
not trivial. Each user also gets requests ("Suggest music for a long drive."), the prompts
of the task; the last one is held out for testing.

User counts per persona follow the shares exactly (largest remainder); everything else is
drawn from ``np.random.default_rng([seed, 7])``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pgrpo.io import PgrpoError
from pgrpo.tasks.persona_scorers import GENRES, STYLES

STYLE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "formal": ("I would recommend {a}; I found it particularly refined.",
               "Kindly suggest further works in the manner of {a}.",
               "I appreciate {a} and would consider {b} as well."),
    "casual": ("hey, been listening to {a} a lot, pretty good stuff",
               "gonna check out more {b} this weekend, kinda hooked on {a}",
               "yeah {a} is a cool vibe, send me more"),
    "enthusiastic": ("I LOVE {a} so much!!! \U0001f389\U0001f3b6",
                     "omg {a} and {b} are the best!!! \U0001f60d",
                     "wow, {a} again today, amazing!!! \U0001f525"),
    "terse": ("{a}. More.", "{a}, {b}.", "Liked {a}."),
    "poetic": ("{a} drifts like moonlight through my evenings.",
               "When {a} plays, my soul hears the ocean and the stars.",
               "{a} and {b}, a velvet whisper at twilight."),
    "humorous": ("my neighbours now know every {a} track by heart, you're welcome, haha",
                 "played {a} so loud the cat filed a complaint, lol",
                 "{a} at the dentist's, no regrets, trust me"),
    "technical": ("{a}: the tempo sits near 120 BPM and the mix keeps its dynamic range.",
                  "The mastering on {a} is clean; {b} uses an unusual time signature.",
                  "Listening to {a} in the key of D minor, 96 kHz sample rate."),
}  # fmt: skip

REQUESTS = (
    "Suggest music for a long drive.",
    "What should I play while cooking dinner?",
    "Recommend something for a rainy afternoon.",
    "I need music for a workout. Any ideas?",
    "What would you play at a small party with friends?",
    "Suggest an album for a late-night study session.",
    "Recommend music for a Sunday morning.",
    "What should I listen to on a train journey?",
)


@dataclass(frozen=True)
class Persona:
    name: str
    style: str
    genre: str
    share: float


def personas_from_config(cfg: dict) -> list[Persona]:
    """The validated persona definitions of config section ``personas``."""
    personas, names = [], set()
    for i, d in enumerate(cfg["definitions"]):
        key = f"personas.definitions[{i}]"
        for field, allowed in (("style", STYLES), ("genre", tuple(GENRES))):
            if d[field] not in allowed:
                raise PgrpoError(f"{key}.{field}: {d[field]!r} is not one of {', '.join(allowed)}")
        if d["name"] in names:
            raise PgrpoError(f"{key}.name: {d['name']!r} is used twice")
        names.add(d["name"])
        personas.append(Persona(d["name"], d["style"], d["genre"], float(d["share"])))
    total = sum(p.share for p in personas)
    if abs(total - 1.0) > 1e-6:
        raise PgrpoError(f"personas.definitions: shares sum to {total:g}, not 1")
    return personas


def allocate(num_users: int, shares: list[float]) -> list[int]:
    """Users per persona: floor(n * share), the rest to the largest remainders (ties: order)."""
    exact = [num_users * s for s in shares]
    counts = [int(np.floor(x)) for x in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: num_users - sum(counts)]:
        counts[i] += 1
    return counts


def _message(persona: Persona, rng: np.random.Generator) -> str:
    template = STYLE_TEMPLATES[persona.style][rng.integers(len(STYLE_TEMPLATES[persona.style]))]
    vocabulary = GENRES[persona.genre]
    a, b = rng.choice(len(vocabulary), size=2, replace=False)
    return template.format(a=vocabulary[a].title(), b=vocabulary[b].title())


def generate_users(cfg: dict, seed: int) -> list[dict]:
    """Users of every persona: ``user_id``, ``persona``, ``style``, ``genre``, ``profile``
    (past messages, some by other personas), ``noisy`` (which messages are), ``requests``."""
    personas = personas_from_config(cfg)
    rng = np.random.default_rng([seed, 7])
    counts = allocate(cfg["num_users"], [p.share for p in personas])
    labels = np.repeat(np.arange(len(personas)), counts)
    rng.shuffle(labels)
    users = []
    for user_id, label in enumerate(labels):
        persona = personas[label]
        profile, noisy = [], []
        for _ in range(cfg["profile_messages"]):
            author = persona
            if rng.random() < cfg["profile_noise"]:
                others = [p for p in personas if p is not persona]
                author = others[rng.integers(len(others))]
            profile.append(_message(author, rng))
            noisy.append(author is not persona)
        picks = rng.choice(len(REQUESTS), size=cfg["requests_per_user"], replace=False)
        users.append({
            "user_id": user_id, "persona": persona.name, "style": persona.style,
            "genre": persona.genre, "profile": profile, "noisy": noisy,
            "requests": [REQUESTS[i] for i in picks],
        })  # fmt: skip
    return users
