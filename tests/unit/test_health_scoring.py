"""Scoring one account from its measure values (closeloop.analysis.health), no warehouse."""

from __future__ import annotations

import pytest

from closeloop.analysis.health import MeasureRule, ScoreRule, score_account

RULE = ScoreRule(
    "s",
    poor=40,
    concerning=70,
    measures=(
        MeasureRule("logins", 3, higher_is_better=True, low=0, high=10),
        MeasureRule("tickets", 1, higher_is_better=False, low=0, high=4),
        MeasureRule("promoter", 2, higher_is_better=True),
    ),
    variants=((1, 1, 0),),
)


def test_scaling_clamps_and_turns_around_for_lower_is_better() -> None:
    logins, tickets, promoter = RULE.measures
    assert [logins.scale(v) for v in (-5, 0, 2.5, 10, 99)] == [0, 0, 25, 100, 100]
    assert [tickets.scale(v) for v in (0, 1, 4, 8)] == [100, 75, 0, 0]
    assert (promoter.scale(1.0), promoter.scale(0.0)) == (100, 0)
    assert MeasureRule("churny", 1, higher_is_better=False).scale(1.0) == 0


def test_missing_and_bad_values_are_re_weighted_away() -> None:
    # logins 5 -> 50, tickets missing, promoter true -> 100: (3*50 + 2*100) / 5 = 70, healthy.
    scored = score_account(RULE, "a", [5.0, None, 1.0])
    assert scored.score == pytest.approx(70.0) and scored.band == "healthy"
    assert scored.missing == ("tickets",)
    assert [p.effective_weight for p in scored.parts] == [0.6, 0.0, 0.4]
    assert sum(p.contribution for p in scored.parts) == pytest.approx(70.0)
    nothing = score_account(RULE, "b", [None, None, None])
    assert (nothing.score, nothing.band) == (None, None)


def test_a_segment_variant_with_a_zero_weight() -> None:
    # Variant 0 weighs logins 1, tickets 1, promoter 0: (100 + 0) / 2 = 50 (concerning).
    scored = score_account(RULE, "c", [12.0, 4.0, 1.0], variant=0)
    assert scored.score == pytest.approx(50.0) and scored.band == "concerning"
    assert scored.parts[2].contribution == 0.0 and not scored.parts[2].missing
    only_zero = score_account(RULE, "d", [None, None, 1.0], variant=0)
    assert only_zero.score is None  # the only measure with a value weighs nothing here


def test_bands_are_half_open() -> None:
    assert [RULE.band(v) for v in (0, 39.999, 40, 69.999, 70, 100)] == [
        "poor", "poor", "concerning", "concerning", "healthy", "healthy",
    ]  # fmt: skip
