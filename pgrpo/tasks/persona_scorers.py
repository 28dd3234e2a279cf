"""Transparent, deterministic scorers of an answer's language style and music genre, in [0, 1].

A persona (docs/method.md, section 4, task 2) is a pair (style, genre). The reward of an answer for
a user is the mean of :func:`style_score` for the user's style and :func:`genre_score` for the
user's genre, after :func:`degenerate` (empty, repetitive or over-long answers score 0).

Every score is a saturating count of visible features, so a reader can see why an answer
scored what it did (``explain``):

* genre: distinct words and names of the genre's vocabulary (artists, instruments, forms),
  minus the vocabulary of the other genres it names;
* style: markers of the style (formal phrasing, slang, emoji and exclamations, brevity,
  imagery, jokes, technical terms), minus markers of the styles that contradict it.
"""

from __future__ import annotations

import math
import re

from pgrpo.tasks.text_checks import degenerate

GENRES: dict[str, tuple[str, ...]] = {
    "classical": ("symphony", "concerto", "sonata", "orchestra", "mozart", "beethoven", "bach",
                  "chopin", "violin", "cello", "opera", "string quartet", "debussy", "vivaldi"),
    "rock": ("guitar", "riff", "led zeppelin", "the rolling stones", "queen", "ac/dc", "nirvana",
             "foo fighters", "classic rock", "rock", "drummer", "power chord", "arena"),
    "pop": ("pop", "taylor swift", "dua lipa", "ariana grande", "chart", "catchy", "chorus",
            "hit", "billboard", "harry styles", "sing-along", "dance-pop"),
    "electronic": ("techno", "house", "synth", "edm", "daft punk", "aphex twin", "deadmau5",
                   "beat", "dj", "electronic", "ambient", "trance", "rave"),
    "jazz": ("jazz", "saxophone", "miles davis", "coltrane", "bebop", "swing", "improvisation",
             "trumpet", "ella fitzgerald", "blue note", "standards", "upright bass"),
    "hip-hop": ("hip-hop", "hip hop", "rap", "kendrick lamar", "beats", "rhymes", "mc", "flow",
                "verse", "outkast", "nas", "boom bap", "freestyle"),
    "metal": ("metal", "metallica", "iron maiden", "black sabbath", "distortion", "shred",
              "headbang", "double bass", "breakdown", "slayer", "heavy", "mosh", "thrash"),
}  # fmt: skip

_EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")
_CONTRACTION = re.compile(r"\b\w+'(s|re|ve|ll|d|t|m)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9'/-]+")

STYLE_MARKERS: dict[str, tuple[str, ...]] = {
    "formal": ("i would recommend", "may i suggest", "i would suggest", "kindly", "regards",
               "you may", "consider", "furthermore", "distinguished", "esteemed", "refined",
               "particularly", "therefore", "i trust", "appreciate"),
    "casual": ("hey", "gonna", "wanna", "kinda", "yeah", "cool", "stuff", "chill", "dude",
               "btw", "pretty good", "check out", "vibe", "totally"),
    "enthusiastic": ("love", "amazing", "awesome", "so good", "best", "omg", "can't wait",
                     "incredible", "yay", "wow"),
    "terse": (),
    "poetic": ("moon", "moonlight", "dream", "whisper", "soul", "ocean", "stars", "like a",
               "golden", "drifts", "heart", "twilight", "velvet", "echo"),
    "humorous": ("haha", "lol", "joke", "you're welcome", "funny", "pun", "trust me",
                 "no regrets", "neighbours", "neighbors", "accidentally", "\U0001f602"),
    "technical": ("bpm", "tempo", "time signature", "tuning", "frequency", "khz", "db",
                  "mastering", "mix", "production", "chord progression", "key of",
                  "dynamic range", "sample rate"),
}  # fmt: skip

STYLES = tuple(STYLE_MARKERS)


def _saturate(count: float, half: float = 1.5) -> float:
    """0 for 0, 0.5 at ``half``, towards 1 for many: 1 - 2^(-count / half)."""
    return 1.0 - math.pow(2.0, -max(count, 0.0) / half)


def _hits(text: str, phrases: tuple[str, ...]) -> int:
    """Distinct phrases of ``phrases`` found in lower-cased ``text`` as whole words."""
    return sum(1 for p in phrases if re.search(rf"(?<![a-z0-9]){re.escape(p)}(?![a-z0-9])", text))


def features(answer: str) -> dict[str, float]:
    """The visible features every style score is made of."""
    text = answer.lower()
    words = _WORD.findall(text)
    features = {f"markers_{s}": float(_hits(text, m)) for s, m in STYLE_MARKERS.items()}
    features.update(
        words=float(len(words)),
        emoji=float(len(_EMOJI.findall(answer))),
        exclamations=float(answer.count("!")),
        contractions=float(len(_CONTRACTION.findall(answer))),
        mean_word_length=sum(map(len, words)) / max(len(words), 1),
    )
    return features


def style_score(answer: str, style: str) -> float:
    """How clearly ``answer`` is written in ``style``, in [0, 1]."""
    if style not in STYLE_MARKERS:
        raise ValueError(f"unknown style {style!r} (allowed: {', '.join(STYLES)})")
    f = features(answer)
    loud = f["emoji"] + f["exclamations"]
    if style == "formal":
        score = _saturate(f["markers_formal"]) - 0.25 * (f["contractions"] + loud)
        score -= 0.2 * (f["markers_casual"] + f["markers_humorous"])
    elif style == "casual":
        score = _saturate(f["markers_casual"] + 0.5 * f["contractions"])
        score -= 0.2 * f["markers_formal"]
    elif style == "enthusiastic":
        score = _saturate(f["emoji"] + 0.5 * f["exclamations"] + 0.5 * f["markers_enthusiastic"])
    elif style == "terse":
        score = 1.0 if 0 < f["words"] <= 8 else max(0.0, 1.0 - (f["words"] - 8) / 12)
        score -= 0.2 * loud
    else:  # poetic, humorous, technical: their own markers
        score = _saturate(f[f"markers_{style}"])
    return min(1.0, max(0.0, score))


def genre_score(answer: str, genre: str) -> float:
    """How clearly ``answer`` is about ``genre``, in [0, 1]: its vocabulary minus others'."""
    if genre not in GENRES:
        raise ValueError(f"unknown genre {genre!r} (allowed: {', '.join(GENRES)})")
    text = answer.lower()
    own = _hits(text, GENRES[genre])
    other = max((_hits(text, v) for g, v in GENRES.items() if g != genre), default=0)
    return min(1.0, max(0.0, _saturate(own) - 0.3 * other))


def persona_reward(answer: str, style: str, genre: str, max_words: int = 80) -> float:
    """The task's reward: mean of style and genre scores; 0 for a degenerate answer."""
    if degenerate(answer, max_words):
        return 0.0
    return 0.5 * (style_score(answer, style) + genre_score(answer, genre))


def explain(answer: str, style: str, genre: str) -> dict[str, float]:
    """Every number behind :func:`persona_reward`, for reports and debugging."""
    return {
        **features(answer),
        "style_score": style_score(answer, style),
        "genre_score": genre_score(answer, genre),
        "degenerate": float(degenerate(answer)),
        "reward": persona_reward(answer, style, genre),
    }
