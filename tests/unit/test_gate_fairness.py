"""The fairness gate judges the point estimate or the interval's upper bound, and says which."""

from pipelines.gate import judge
from pipelines.spec import GateSpec

METRICS = {"roc_auc": 0.9}
# Point estimate under the 0.10 limit, interval crossing it.
FAIRNESS = {"sex": {"differences": {"demographic_parity_difference": 0.08},
                    "intervals": {"demographic_parity_difference": [0.05, 0.12]}}}


def gate(**limit):
    return GateSpec(fairness={"demographic_parity_difference": limit})


def test_point_estimate_is_the_default_and_the_rule_says_the_interval_crosses():
    verdict = judge(gate(absolute=0.10), METRICS, None, FAIRNESS)
    (rule,) = [r for r in verdict["rules"] if "sex" in r["rule"]]
    assert verdict["passed"] and rule["passed"]
    assert rule["value"] == 0.08 and rule["interval"] == [0.05, 0.12]
    assert "point estimate" in rule["rule"]
    assert "crosses the limit" in rule["rule"] and "upper_bound" in rule["rule"]


def test_upper_bound_fails_when_the_interval_crosses_the_limit():
    verdict = judge(gate(absolute=0.10, use="upper_bound"), METRICS, None, FAIRNESS)
    (rule,) = [r for r in verdict["rules"] if "sex" in r["rule"]]
    assert not verdict["passed"] and not rule["passed"]
    assert rule["value"] == 0.12 and "upper 95% bound" in rule["rule"]
    assert "crosses" not in rule["rule"]


def test_upper_bound_passes_when_the_whole_interval_is_under_the_limit():
    verdict = judge(gate(absolute=0.15, use="upper_bound"), METRICS, None, FAIRNESS)
    assert verdict["passed"]


def test_relative_limit_uses_the_same_choice():
    champion = {"version": 1, "metrics": {"roc_auc": 0.9},
                "fairness": {"sex": {"differences": {"demographic_parity_difference": 0.05}}}}
    verdict = judge(gate(relative=0.05, use="upper_bound").model_copy(update={"tolerances": {}}),
                    METRICS, champion, FAIRNESS)
    (rule,) = [r for r in verdict["rules"] if "champion's +" in r["rule"]]
    assert rule["limit"] == 0.1 and rule["value"] == 0.12 and not rule["passed"]
