"""Pure statistics: sufficient statistics in, estimates with honest uncertainty out.

Nothing here touches data stores; callers aggregate in the warehouse and pass counts and sums.
Values are checked against GrowthBook's gbstats, lifelines and R (tests/data/stats_cases.json).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closeloop.lazy_exports import load_export

if TYPE_CHECKING:
    from closeloop.stats.checks import SrmResult, adjust_p_values, srm_test
    from closeloop.stats.frequentist import ABSOLUTE, RELATIVE, cuped_test, welch_test
    from closeloop.stats.matching import (
        ArmSums,
        BalanceRow,
        Covariate,
        MatchCounts,
        Stratum,
        att_test,
        balance_table,
        cem_weights,
        match_counts,
        stratify,
        sturges_cutpoints,
    )
    from closeloop.stats.power import (
        DurationPlan,
        EnrollmentPlan,
        minimum_detectable_effect,
        plan_duration,
        plan_enrollment,
        required_sample_size,
    )
    from closeloop.stats.proportions import proportion_test
    from closeloop.stats.results import ComparisonResult, Interval, Status, lower_is_better
    from closeloop.stats.sequential import confidence_sequence
    from closeloop.stats.statistics import (
        ProportionStatistic,
        RatioStatistic,
        RegressionAdjustedStatistic,
        SampleMeanStatistic,
        Statistic,
        pooled_theta,
    )
    from closeloop.stats.survey import NpsResult, nps, nps_from_scores
    from closeloop.stats.survival import (
        KaplanMeierResult,
        LogRankResult,
        RiskTable,
        kaplan_meier,
        logrank_test,
        restricted_mean,
        rmst_difference,
    )

__all__ = [
    "ABSOLUTE",
    "RELATIVE",
    "ArmSums",
    "BalanceRow",
    "ComparisonResult",
    "Covariate",
    "DurationPlan",
    "EnrollmentPlan",
    "Interval",
    "KaplanMeierResult",
    "LogRankResult",
    "MatchCounts",
    "NpsResult",
    "ProportionStatistic",
    "RatioStatistic",
    "RegressionAdjustedStatistic",
    "RiskTable",
    "SampleMeanStatistic",
    "SrmResult",
    "Statistic",
    "Status",
    "Stratum",
    "adjust_p_values",
    "att_test",
    "balance_table",
    "cem_weights",
    "confidence_sequence",
    "cuped_test",
    "kaplan_meier",
    "logrank_test",
    "lower_is_better",
    "match_counts",
    "minimum_detectable_effect",
    "nps",
    "nps_from_scores",
    "plan_duration",
    "plan_enrollment",
    "pooled_theta",
    "proportion_test",
    "required_sample_size",
    "restricted_mean",
    "rmst_difference",
    "srm_test",
    "stratify",
    "sturges_cutpoints",
    "welch_test",
]

# Each name and the module that defines it, imported on first use: a module that needs one
# statistic (the engine's allocation needs the bandit, which needs NumPy alone) then does not
# load SciPy through the others.
_EXPORTS = {
    "SrmResult": "checks",
    "adjust_p_values": "checks",
    "srm_test": "checks",
    "ABSOLUTE": "frequentist",
    "RELATIVE": "frequentist",
    "cuped_test": "frequentist",
    "welch_test": "frequentist",
    "ArmSums": "matching",
    "BalanceRow": "matching",
    "Covariate": "matching",
    "MatchCounts": "matching",
    "Stratum": "matching",
    "att_test": "matching",
    "balance_table": "matching",
    "cem_weights": "matching",
    "match_counts": "matching",
    "stratify": "matching",
    "sturges_cutpoints": "matching",
    "DurationPlan": "power",
    "EnrollmentPlan": "power",
    "minimum_detectable_effect": "power",
    "plan_duration": "power",
    "plan_enrollment": "power",
    "required_sample_size": "power",
    "proportion_test": "proportions",
    "ComparisonResult": "results",
    "Interval": "results",
    "Status": "results",
    "lower_is_better": "results",
    "confidence_sequence": "sequential",
    "ProportionStatistic": "statistics",
    "RatioStatistic": "statistics",
    "RegressionAdjustedStatistic": "statistics",
    "SampleMeanStatistic": "statistics",
    "Statistic": "statistics",
    "pooled_theta": "statistics",
    "NpsResult": "survey",
    "nps": "survey",
    "nps_from_scores": "survey",
    "KaplanMeierResult": "survival",
    "LogRankResult": "survival",
    "RiskTable": "survival",
    "kaplan_meier": "survival",
    "logrank_test": "survival",
    "restricted_mean": "survival",
    "rmst_difference": "survival",
}


def __getattr__(name: str) -> Any:
    return load_export(__name__, _EXPORTS, globals(), name)
