"""Each persona scorer prefers hand-written answers of its own persona; degenerate answers
score 0."""

from __future__ import annotations

import pytest

from pgrpo.tasks.persona_scorers import (
    GENRES,
    STYLES,
    degenerate,
    genre_score,
    persona_reward,
    style_score,
)

# One hand-written answer per persona to "suggest music for a long drive".
ANSWERS = {
    ("formal", "classical"): "I would recommend Beethoven's Seventh Symphony; you may also "
    "consider a Mozart piano concerto, which I trust will make the journey particularly "
    "pleasant.",
    ("casual", "rock"): "hey, you're gonna want some classic rock for that, crank up Led "
    "Zeppelin and the Foo Fighters, great guitar riffs, it's a cool vibe",
    ("enthusiastic", "pop"): "OMG yes!!! \U0001f389\U0001f3b6 Taylor Swift and Dua Lipa, "
    "the catchiest pop hits ever, sing every chorus!!! \U0001f697\U0001f495",
    ("terse", "electronic"): "Daft Punk. Techno. Synth.",
    ("poetic", "jazz"): "Let Miles Davis's trumpet drift like moonlight over the road, "
    "Coltrane's saxophone a whisper to the soul beneath the stars.",
    ("humorous", "hip-hop"): "Kendrick Lamar, obviously, and some OutKast: your rap "
    "freestyle at the toll booth will be legendary, haha, trust me, no regrets",
    ("technical", "metal"): "Metallica's Master of Puppets: thrash at about 212 BPM, E "
    "standard tuning, and the mastering keeps the dynamic range of the distortion intact.",
}
PERSONAS = list(ANSWERS)


def test_every_style_and_genre_has_a_test_answer():
    assert {s for s, _ in PERSONAS} == set(STYLES)
    assert {g for _, g in PERSONAS} == set(GENRES)


@pytest.mark.parametrize("persona", PERSONAS, ids="/".join)
def test_each_answer_scores_highest_for_its_own_persona(persona):
    answer = ANSWERS[persona]
    own = persona_reward(answer, *persona)
    assert own >= 0.6, own
    for other in PERSONAS:
        if other != persona:
            assert persona_reward(answer, *other) < own - 0.2, other


@pytest.mark.parametrize("persona", PERSONAS, ids="/".join)
def test_style_and_genre_scorers_each_prefer_their_own_answer(persona):
    style, genre = persona
    own_style = style_score(ANSWERS[persona], style)
    own_genre = genre_score(ANSWERS[persona], genre)
    for other in PERSONAS:
        if other != persona:
            assert style_score(ANSWERS[other], style) < own_style, (style, other)
            assert genre_score(ANSWERS[other], genre) < own_genre, (genre, other)


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   ",
        "jazz jazz jazz jazz jazz jazz jazz jazz",
        "Miles Davis " * 60,
        "the the the the saxophone the the the",
    ],
)
def test_degenerate_answers_score_zero(answer):
    assert degenerate(answer)
    assert persona_reward(answer, "poetic", "jazz") == 0.0


def test_unknown_style_or_genre_is_named():
    with pytest.raises(ValueError, match="unknown style 'shouty'"):
        style_score("hi", "shouty")
    with pytest.raises(ValueError, match="unknown genre 'polka'"):
        genre_score("hi", "polka")
