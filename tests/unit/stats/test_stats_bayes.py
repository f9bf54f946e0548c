"""The Bayesian read-out against closed forms, seeded Monte Carlo and exact enumeration.

Reference values and their tolerances:

- Evan Miller's closed form for P(p_t > p_c) with integer Beta parameters: within 1e-9;
- ``scipy.integrate.quad`` on the density for non-integer parameters: within 1e-9;
- 2,000,000 seeded posterior draws: within 4.5 Monte Carlo standard errors (the MC SE of each
  quantity is computed from the same draws) plus 5 / 2,000,000 for events too rare to be drawn;
- calibration: averaged over every data set of a small design, weighted by its prior predictive
  probability, the posterior P(p_t > p_c) equals the prior probability 1/2 and the expected loss
  equals its prior value (1/6 under the uniform prior); within 1e-9.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace

import numpy as np
import pytest
from scipy import integrate, special
from scipy import stats as sps

from closeloop.stats.bayes import BayesianReadout, beta_binomial_readout, normal_readout
from closeloop.stats.frequentist import welch_test
from closeloop.stats.statistics import ProportionStatistic, SampleMeanStatistic


def _miller(ac: float, bc: float, at: float, bt: float) -> float:
    """P(p_t > p_c), p_c ~ Beta(ac, bc), p_t ~ Beta(at, bt), at an integer (Miller 2015)."""
    i = np.arange(int(at))
    terms = (
        special.betaln(ac + i, bc + bt)
        - np.log(bt + i)
        - special.betaln(1 + i, bt)
        - special.betaln(ac, bc)
    )
    return float(np.exp(terms).sum())


def _readout(c: tuple[int, int], t: tuple[int, int], **kwargs: object) -> BayesianReadout:
    """c and t as (successes, n)."""
    return beta_binomial_readout(
        ProportionStatistic(c[1], c[0]),
        ProportionStatistic(t[1], t[0]),
        **kwargs,  # type: ignore[arg-type]
    )


CASES = [  # (control successes, n), (treatment successes, n)
    ((2, 40), (19, 160)),
    ((0, 20), (0, 80)),
    ((0, 20), (3, 80)),
    ((20, 20), (20, 20)),
    ((7, 60), (12, 240)),
    ((30, 10_000), (45, 10_000)),
    ((3, 20), (500, 10_000)),
    ((5_000, 10_000), (0, 20)),
    ((400, 400), (0, 400)),
]


@pytest.mark.parametrize(("control", "treatment"), CASES)
def test_probability_better_matches_evan_millers_closed_form(
    control: tuple[int, int], treatment: tuple[int, int]
) -> None:
    readout = _readout(control, treatment)
    failures_c, failures_t = control[1] - control[0], treatment[1] - treatment[0]
    expected = _miller(1 + control[0], 1 + failures_c, 1 + treatment[0], 1 + failures_t)
    assert readout.probability_better == pytest.approx(expected, abs=1e-9)


def test_no_completions_in_either_arm_gives_the_exact_fraction() -> None:
    # a_t = 1 leaves one term of Miller's sum: B(1, 102) / (81 B(1, 81) B(1, 21)) = 21 / 102.
    readout = _readout((0, 20), (0, 80))
    assert readout.probability_better == pytest.approx(21 / 102, abs=1e-12)
    assert readout.is_defined and readout.message == ""


@pytest.mark.parametrize(
    ("control", "treatment", "prior"),
    [
        ((2, 40), (9, 160), (0.5, 0.5)),
        ((1, 20), (4, 80), (2.5, 7.5)),
        ((17, 300), (9, 90), (0.5, 2)),
    ],
)
def test_non_integer_priors_match_adaptive_quadrature(
    control: tuple[int, int], treatment: tuple[int, int], prior: tuple[float, float]
) -> None:
    readout = _readout(control, treatment, prior=prior)
    pc = sps.beta(prior[0] + control[0], prior[1] + control[1] - control[0])
    pt = sps.beta(prior[0] + treatment[0], prior[1] + treatment[1] - treatment[0])
    probability, _ = integrate.quad(lambda x: pc.pdf(x) * pt.sf(x), 0, 1, epsabs=1e-13)
    loss, _ = integrate.quad(
        lambda x: pc.pdf(x) * integrate.quad(lambda y: (x - y) * pt.pdf(y), 0, x)[0], 0, 1
    )
    assert readout.probability_better == pytest.approx(probability, abs=1e-9)
    assert readout.expected_loss_treatment == pytest.approx(loss, abs=1e-9)


@pytest.mark.parametrize(
    ("control", "treatment"), [((0, 20), (0, 80)), ((2, 40), (19, 160)), ((20, 20), (0, 20))]
)
def test_credible_interval_ends_hold_the_stated_mass_by_adaptive_quadrature(
    control: tuple[int, int], treatment: tuple[int, int]
) -> None:
    # P(p_t - p_c <= d) = integral of f_c(x) F_t(x + d) dx, which has a kink at x = -d.
    interval = _readout(control, treatment, alpha=0.1).credible_interval
    pc = sps.beta(1 + control[0], 1 + control[1] - control[0])
    pt = sps.beta(1 + treatment[0], 1 + treatment[1] - treatment[0])

    def cdf(d: float) -> float:
        integrand = lambda x: pc.pdf(x) * pt.cdf(min(max(x + d, 0.0), 1.0))  # noqa: E731
        value, _ = integrate.quad(integrand, 0, 1, points=[min(max(-d, 0.0), 1.0)], epsabs=1e-13)
        return float(value)

    assert cdf(interval.lower) == pytest.approx(0.05, abs=1e-9)
    assert cdf(interval.upper) == pytest.approx(0.95, abs=1e-9)


@pytest.mark.parametrize(
    ("control", "treatment", "prior"),
    [
        ((2, 40), (19, 160), (1.0, 1.0)),
        ((0, 20), (0, 80), (0.5, 0.5)),  # densities infinite at 0
        ((0, 20), (20, 20), (1.0, 1.0)),
    ],
)
def test_readout_matches_two_million_seeded_posterior_draws(
    control: tuple[int, int], treatment: tuple[int, int], prior: tuple[float, float]
) -> None:
    readout = _readout(control, treatment, prior=prior)
    rng = np.random.default_rng(20240611)
    draws = 2_000_000
    pc = rng.beta(prior[0] + control[0], prior[1] + control[1] - control[0], draws)
    pt = rng.beta(prior[0] + treatment[0], prior[1] + treatment[1] - treatment[0], draws)
    difference = pt - pc

    def check(values: np.ndarray, computed: float) -> None:
        se = values.std() / math.sqrt(draws)
        # 5 / draws: an event of probability ~1e-12 is (rightly) never drawn, and then se is 0.
        assert abs(values.mean() - computed) <= 4.5 * se + 5 / draws

    check((difference > 0).astype(float), readout.probability_better)
    check(np.maximum(-difference, 0), readout.expected_loss_treatment)
    check(np.maximum(difference, 0), readout.expected_loss_control)
    check(difference, readout.posterior_mean)
    # The interval's ends are the posterior's 2.5% and 97.5% quantiles: check the mass below each.
    check((difference <= readout.credible_interval.lower).astype(float), 0.025)
    check((difference <= readout.credible_interval.upper).astype(float), 0.975)


@pytest.mark.parametrize(("control", "treatment"), CASES)
def test_swapping_the_arms_mirrors_the_readout(
    control: tuple[int, int], treatment: tuple[int, int]
) -> None:
    forward, backward = _readout(control, treatment), _readout(treatment, control)
    assert backward.probability_better == pytest.approx(1 - forward.probability_better, abs=1e-10)
    assert backward.expected_loss_treatment == pytest.approx(
        forward.expected_loss_control, abs=1e-10
    )
    assert backward.expected_loss_control == pytest.approx(
        forward.expected_loss_treatment, abs=1e-10
    )
    assert backward.credible_interval.lower == pytest.approx(
        -forward.credible_interval.upper, abs=1e-9
    )
    assert backward.credible_interval.upper == pytest.approx(
        -forward.credible_interval.lower, abs=1e-9
    )


@pytest.mark.parametrize(("control", "treatment"), CASES)
def test_losses_differ_by_the_posterior_mean_difference(
    control: tuple[int, int], treatment: tuple[int, int]
) -> None:
    # E[max(D, 0)] - E[max(-D, 0)] = E[D]: computed separately, they must agree.
    readout = _readout(control, treatment)
    mean = (1 + treatment[0]) / (2 + treatment[1]) - (1 + control[0]) / (2 + control[1])
    assert readout.posterior_mean == pytest.approx(mean, abs=1e-15)
    gap = readout.expected_loss_control - readout.expected_loss_treatment
    assert gap == pytest.approx(mean, abs=1e-11)
    assert readout.credible_interval.contains(mean)


@pytest.mark.parametrize("counts", [(0, 20), (20, 20), (5, 40), (40, 400), (35, 10_000)])
def test_identical_data_is_a_coin_flip(counts: tuple[int, int]) -> None:
    readout = _readout(counts, counts)
    assert readout.probability_better == pytest.approx(0.5, abs=1e-12)
    assert readout.expected_loss_treatment == pytest.approx(readout.expected_loss_control, rel=1e-9)
    interval = readout.credible_interval
    assert interval.lower == pytest.approx(-interval.upper, abs=1e-9)
    assert interval.lower < 0 < interval.upper


def test_edge_counts_give_finite_readouts() -> None:
    none_completed = _readout((0, 20), (0, 80))
    assert none_completed.expected_loss_treatment == pytest.approx(0.0357458076, abs=1e-9)
    assert none_completed.expected_loss_control == pytest.approx(0.0024863841, abs=1e-9)
    assert none_completed.credible_interval.lower == pytest.approx(-0.1503751809, abs=1e-9)
    assert none_completed.credible_interval.upper == pytest.approx(0.0254448207, abs=1e-9)

    all_completed = _readout((20, 20), (20, 20))
    assert all_completed.probability_better == pytest.approx(0.5, abs=1e-12)
    assert all_completed.credible_interval.upper == pytest.approx(0.1298934515, abs=1e-9)

    # Treatment 0/20 against control 20/20: P(better) is C(42, 21)^-1-small, not 0 or nan.
    reversed_extremes = _readout((20, 20), (0, 20))
    assert reversed_extremes.probability_better == pytest.approx(_miller(21, 1, 1, 21), rel=1e-6)
    assert 0 < reversed_extremes.probability_better < 1e-11
    assert reversed_extremes.expected_loss_control == pytest.approx(0.0, abs=1e-12)


def test_more_treatment_completions_raise_p_better_and_lower_the_loss() -> None:
    readouts = [_readout((4, 40), (k, 160)) for k in range(0, 41, 2)]
    probabilities = [r.probability_better for r in readouts]
    losses = [r.expected_loss_treatment for r in readouts]
    assert all(b > a for a, b in itertools.pairwise(probabilities))
    assert all(b < a for a, b in itertools.pairwise(losses))
    uppers = [r.credible_interval.upper for r in readouts]
    assert all(b > a for a, b in itertools.pairwise(uppers))
    control_side = [_readout((k, 40), (16, 160)).probability_better for k in range(0, 11)]
    assert all(b < a for a, b in itertools.pairwise(control_side))


def test_a_wider_credible_level_widens_the_interval() -> None:
    narrow = _readout((2, 40), (19, 160), alpha=0.2).credible_interval
    wide = _readout((2, 40), (19, 160), alpha=0.01).credible_interval
    assert wide.lower < narrow.lower < narrow.upper < wide.upper


@pytest.mark.parametrize(("n_control", "n_treatment"), [(4, 9), (6, 3)])
def test_uniform_prior_average_posterior_equals_the_prior_probability(
    n_control: int, n_treatment: int
) -> None:
    # Under a uniform prior every count 0..n is equally likely a priori, so averaging the
    # posterior quantities over all (n_c + 1)(n_t + 1) data sets gives their prior values:
    # P(p_t > p_c) = 1/2 and E[max(p_c - p_t, 0)] = E|U - V| / 2 = 1/6.
    readouts = [
        _readout((c, n_control), (t, n_treatment))
        for c in range(n_control + 1)
        for t in range(n_treatment + 1)
    ]
    assert np.mean([r.probability_better for r in readouts]) == pytest.approx(0.5, abs=1e-9)
    assert np.mean([r.expected_loss_treatment for r in readouts]) == pytest.approx(1 / 6, abs=1e-9)
    assert np.mean([r.expected_loss_control for r in readouts]) == pytest.approx(1 / 6, abs=1e-9)


def test_jeffreys_prior_average_posterior_equals_the_prior_probability() -> None:
    # The same identity with the prior predictive (beta-binomial) weights of a Beta(1/2, 1/2) prior.
    n_control, n_treatment = 5, 8
    weights_c = sps.betabinom.pmf(np.arange(n_control + 1), n_control, 0.5, 0.5)
    weights_t = sps.betabinom.pmf(np.arange(n_treatment + 1), n_treatment, 0.5, 0.5)
    average = sum(
        weights_c[c]
        * weights_t[t]
        * _readout((c, n_control), (t, n_treatment), prior=(0.5, 0.5)).probability_better
        for c in range(n_control + 1)
        for t in range(n_treatment + 1)
    )
    assert average == pytest.approx(0.5, abs=1e-9)


def test_a_call_at_ten_thousand_units_takes_under_50_ms() -> None:
    arms = (ProportionStatistic(10_000, 30), ProportionStatistic(10_000, 45))
    beta_binomial_readout(*arms)
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        beta_binomial_readout(*arms)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.05


def test_degenerate_counts_are_reported_not_raised() -> None:
    empty = beta_binomial_readout(ProportionStatistic(0, 0), ProportionStatistic(80, 3))
    assert not empty.is_defined
    assert "no units" in empty.message
    assert math.isnan(empty.probability_better) and math.isnan(empty.credible_interval.lower)
    impossible = beta_binomial_readout(ProportionStatistic(20, 21), ProportionStatistic(80, 3))
    assert "control has 21 successes of 20 units" in impossible.message
    assert math.isnan(impossible.expected_loss_treatment)


@pytest.mark.parametrize(
    "kwargs", [{"alpha": 0.0}, {"alpha": 1.5}, {"prior": (0.0, 1.0)}, {"prior": (1.0, math.inf)}]
)
def test_invalid_arguments_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"alpha|prior"):
        beta_binomial_readout(ProportionStatistic(20, 1), ProportionStatistic(80, 3), **kwargs)  # type: ignore[arg-type]


def test_prior_is_described() -> None:
    assert _readout((1, 20), (3, 80)).prior == "Beta(1, 1) on each arm's rate (uniform)"
    jeffreys = _readout((1, 20), (3, 80), prior=(0.5, 0.5)).prior
    assert jeffreys == "Beta(0.5, 0.5) on each arm's rate (Jeffreys)"


# --- numeric outcomes -------------------------------------------------------------------------

CONTROL_VALUES = SampleMeanStatistic(n=40, sum=4_120.0, sum_squares=612_300.0)
TREATMENT_VALUES = SampleMeanStatistic(n=160, sum=18_940.0, sum_squares=2_790_100.0)


def test_normal_readout_is_the_welch_estimate_read_as_a_posterior() -> None:
    readout = normal_readout(CONTROL_VALUES, TREATMENT_VALUES)
    welch = welch_test(CONTROL_VALUES, TREATMENT_VALUES)
    d, se = welch.estimate, welch.se
    assert readout.posterior_mean == pytest.approx(d, rel=1e-12)
    assert readout.probability_better == pytest.approx(float(sps.norm.cdf(d / se)), rel=1e-12)
    z = float(sps.norm.isf(0.025))
    assert readout.credible_interval.lower == pytest.approx(d - z * se, rel=1e-12)
    assert readout.credible_interval.upper == pytest.approx(d + z * se, rel=1e-12)
    assert readout.prior.startswith("flat prior")


@pytest.mark.parametrize(("d", "se"), [(1.7, 2.0), (-3.0, 0.5), (0.0, 1.0), (40.0, 1.0)])
def test_normal_expected_losses_match_numerical_integration(d: float, se: float) -> None:
    # Build arms whose Welch difference is d with standard error se.
    control = SampleMeanStatistic(n=2, sum=0.0, sum_squares=se * se)  # variance 2 se^2 / 2 arms
    treatment = SampleMeanStatistic(n=2, sum=2 * d, sum_squares=2 * d * d + se * se)
    readout = normal_readout(control, treatment)
    assert readout.posterior_mean == pytest.approx(d)
    density = sps.norm(d, se)
    lower, upper = min(d - 12 * se, 0.0), max(d + 12 * se, 0.0)
    treatment_loss, _ = integrate.quad(lambda x: -x * density.pdf(x), lower, 0, epsabs=1e-12)
    control_loss, _ = integrate.quad(lambda x: x * density.pdf(x), 0, upper, epsabs=1e-12)
    assert readout.expected_loss_treatment == pytest.approx(treatment_loss, abs=1e-9)
    assert readout.expected_loss_control == pytest.approx(control_loss, abs=1e-9)


def test_normal_readout_mirrors_when_the_arms_swap() -> None:
    forward = normal_readout(CONTROL_VALUES, TREATMENT_VALUES)
    backward = normal_readout(TREATMENT_VALUES, CONTROL_VALUES)
    assert backward.probability_better == pytest.approx(1 - forward.probability_better)
    assert backward.expected_loss_control == pytest.approx(forward.expected_loss_treatment)
    same = normal_readout(CONTROL_VALUES, CONTROL_VALUES)
    assert same.probability_better == 0.5
    assert same.expected_loss_treatment == same.expected_loss_control > 0


@pytest.mark.parametrize(
    ("control", "message"),
    [
        (SampleMeanStatistic(n=1, sum=3.0, sum_squares=9.0), "at least 2 units"),
        (SampleMeanStatistic(n=0, sum=0.0, sum_squares=0.0), "at least 2 units"),
        (SampleMeanStatistic(n=10, sum=math.nan, sum_squares=1.0), "not finite"),
    ],
)
def test_normal_readout_degenerate_inputs(control: SampleMeanStatistic, message: str) -> None:
    readout = normal_readout(control, TREATMENT_VALUES)
    assert message in readout.message
    assert math.isnan(readout.probability_better) and math.isnan(readout.posterior_mean)


def test_normal_readout_without_variance_is_reported() -> None:
    constant = SampleMeanStatistic(n=10, sum=50.0, sum_squares=250.0)
    readout = normal_readout(constant, replace(constant, n=20, sum=100.0, sum_squares=500.0))
    assert readout.message == "the outcome does not vary in either arm"
    assert math.isnan(readout.expected_loss_control)
