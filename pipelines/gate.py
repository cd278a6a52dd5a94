"""The deploy gate: quality floors, no regression against the champion, fairness limits.

Every rule that is checked is listed with its verdict, so the card can say exactly why
the gate passed or failed. The first model (no champion) is judged on absolute limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipelines.baselines import TITLES
from pipelines.spec import GateSpec

HIGHER_IS_BETTER = {"roc_auc": True, "accuracy": True, "f1": True, "log_loss": False,
                    "brier": False, "ece": False}


def judge(cfg: GateSpec, candidate: dict[str, float], baseline: dict[str, Any] | None,
          fairness: dict[str, dict[str, Any]],
          baselines: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Apply the spec's limits; returns ``{"passed": bool, "rules": [...]}``.

    Args:
        cfg: The spec's gate section.
        candidate: The candidate's held-out metrics.
        baseline: The champion scored on the same rows (``metrics``, ``fairness``), or
            None when there is no champion yet.
        fairness: The candidate's fairness per sensitive column.
        baselines: The scikit-learn baselines' metrics on the same rows, by name
            (judged by ``min_lift_over_baseline``).
    """
    rules: list[dict[str, Any]] = []
    champion = baseline["metrics"] if baseline else None
    champion_fairness = baseline["fairness"] if baseline else None
    if baseline and baseline.get("missing_columns"):
        # A schema change: the champion cannot be scored on the candidate's rows.
        rules.append({"rule": f"champion v{baseline['version']} scored on the same rows "
                              f"(it needs columns {baseline['missing_columns']} the candidate's "
                              "data lacks; review and promote by hand)",
                      "value": float("nan"), "limit": float("nan"), "passed": False})

    def rule(name: str, value: float, limit: float, ok: bool,
             interval: list[float] | None = None) -> None:
        entry: dict[str, Any] = {"rule": name, "value": value, "limit": limit, "passed": bool(ok)}
        if interval is not None:
            entry["interval"] = interval
        rules.append(entry)

    for metric, floor in cfg.min_metrics.items():
        rule(f"{metric} ≥ {floor}", candidate[metric], floor, candidate[metric] >= floor)
    for metric, ceiling in cfg.max_metrics.items():
        rule(f"{metric} ≤ {ceiling}", candidate[metric], ceiling, candidate[metric] <= ceiling)
    if champion is not None:
        for metric, tol in cfg.tolerances.items():
            if HIGHER_IS_BETTER.get(metric, True):
                limit = champion[metric] - tol
                rule(f"{metric} not below champion's {champion[metric]:.4f} by more than {tol}",
                     candidate[metric], limit, candidate[metric] >= limit)
            else:
                limit = champion[metric] + tol
                rule(f"{metric} not above champion's {champion[metric]:.4f} by more than {tol}",
                     candidate[metric], limit, candidate[metric] <= limit)
    for metric, lift in cfg.min_lift_over_baseline.items():
        _lift_rule(rule, metric, lift, candidate, baselines or {})
    for column, result in fairness.items():
        for name, point in result["differences"].items():
            limits = cfg.fairness.get(name)
            if limits is None:
                continue
            interval = [float(x) for x in result.get("intervals", {}).get(name, [])] or None
            upper = limits.use == "upper_bound" and interval is not None
            value = interval[1] if upper else point
            what = "upper 95% bound" if upper else "point estimate"
            checks = []
            if limits.absolute is not None:
                checks.append((f"{column}: {name} ({what}) ≤ {limits.absolute}",
                               limits.absolute))
            if limits.relative is not None and champion_fairness and column in champion_fairness:
                checks.append((f"{column}: {name} ({what}) ≤ champion's + {limits.relative}",
                               champion_fairness[column]["differences"][name] + limits.relative))
            for text, limit in checks:
                if not upper and interval is not None and interval[0] <= limit < interval[1]:
                    text += (f"; its 95% interval [{interval[0]:.4f}, {interval[1]:.4f}] "
                             "crosses the limit (use: upper_bound judges the bound)")
                rule(text, value, limit, value <= limit, interval=interval)
    return {"passed": all(r["passed"] for r in rules), "rules": rules,
            "compared_with_champion": baseline is not None}


def _lift_rule(rule: Callable[[str, float, float, bool], None], metric: str, lift: float,
               candidate: dict[str, float], baselines: dict[str, dict[str, float]]) -> None:
    """The candidate beats the best baseline on ``metric`` by at least ``lift``."""
    if not baselines:
        rule(f"{metric} lift over the best baseline ≥ {lift} (no baseline was scored)",
             float("nan"), lift, False)
        return
    higher = HIGHER_IS_BETTER.get(metric, True)
    pick = max if higher else min
    name, best = pick(((n, m[metric]) for n, m in sorted(baselines.items())),
                      key=lambda item: item[1])
    value = candidate[metric] - best if higher else best - candidate[metric]
    rule(f"{metric} beats the best baseline ({TITLES.get(name, name)}, {best:.4f}) by ≥ {lift}",
         value, lift, value >= lift)
