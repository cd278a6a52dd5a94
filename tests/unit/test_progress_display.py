"""What the terminal shows while a chain runs, fed the events a run produces.

The stages' progress messages are made by the code that logs them in a real run
(`LoggedTraining`'s trial and epoch lines, `training.Progress`, `RowProgress`), so a change
of their wording that the display no longer reads fails here.
"""

from __future__ import annotations

import io
import re
import threading
from types import SimpleNamespace

import pytest

from cli.demo import deployment_line
from cli.progress_display import LiveTable, ProgressDisplay
from cli.run_progress import (
    Materialized,
    Planned,
    RunProgress,
    StageLog,
    StepEnded,
    StepStarted,
    deployment_text,
    stage_summary,
)
from pipelines.progress import RowProgress
from pipelines.records import DeploymentOutcome
from pipelines.stages.training import LoggedTraining
from pipelines.training import Progress
from pipelines.tuning import TrialRecord

M = "breast_cancer"
T0 = 1_000_000.0


def training_lines() -> SimpleNamespace:
    """The training stage's own trial and epoch lines, as it logs them."""
    said: list[str] = []
    owner = SimpleNamespace(say=said.append)
    return SimpleNamespace(said=said,
                           trial=lambda n, state="COMPLETE": LoggedTraining._trial(
                               owner, TrialRecord(n, {}, 0.4, state, 12, [])),
                           epoch=lambda e, n: LoggedTraining._epoch(
                               owner, {"epoch": e - 1, "epochs": n, "train_loss": 0.3,
                                       "val_loss": 0.4, "val_auc": 0.9}))


def row_lines(doing: str, total: int | None, batches: list[int]) -> list[str]:
    """RowProgress's lines for ``batches`` done over the last ten seconds."""
    said: list[str] = []
    progress = RowProgress(said.append, doing, total, every_s=0.0)
    progress.start -= 10.0
    for rows in batches:
        progress.add(rows)
    return said


def planned() -> list:
    return [Planned("breast_cancer__raw_source", M, "raw_source"),
            Planned("breast_cancer_ingest", M, "raw_data"),
            Planned("breast_cancer_ingest", M, "validated_features"),
            Planned("breast_cancer__trained_weights", M, "trained_weights"),
            Planned("breast_cancer__deployment", M, "deployment")]


def miss(stage: str, step: str, at: float) -> StageLog:
    return StageLog(step, f"{stage}: cache miss for recipe b3:0123456789abcdef…; computing", at)


def test_trials_then_epochs_count_up_with_the_time_left():
    run, lines = RunProgress(), training_lines()
    step = "breast_cancer__trained_weights"
    for event in planned():
        run.feed(event)
    (view,) = run.feed(StepStarted(step, T0))
    assert view.name == f"{M}/trained_weights"
    run.feed(miss("trained_weights", step, T0))
    run.feed(StageLog(step, "Optuna study trained_weights-ab12: 4 trials; more workers can "
                            "join with `python -m cli.tune_worker ...`", T0))
    assert (view.cache, view.progress_text(), view.eta_text()) == ("miss", "0/4 trials", "")
    lines.trial(0)
    run.feed(StageLog(step, lines.said[-1], T0 + 10))
    # One of four trials took 10 s: three more take about 30 s.
    assert view.progress_text() == "1/4 trials" and view.eta_text() == "about 30 s left"
    assert view.eta_text(now=T0 + 25) == "about 15 s left"  # counts down between events
    for n in (1, 2, 3):
        lines.trial(n, "PRUNED")
        run.feed(StageLog(step, lines.said[-1], T0 + 10 + n * 10))
    assert view.progress_text() == "4/4 trials"
    lines.epoch(1, 40)
    run.feed(StageLog(step, lines.said[-1], T0 + 42))
    # The final fit started after the last trial (T0 + 40): 2 s an epoch, 39 to go at most.
    assert view.progress_text() == "1/40 epochs"
    assert view.eta_text() == "at most 1 min 18 s left"
    # Inside a long epoch, the fit's own estimate.
    run.feed(StageLog(step, Progress(1, 40, 512, 2048, 256.0).line(), T0 + 44))
    assert view.done == 1.25 and view.eta_s == pytest.approx(312.0) and view.upper_bound
    assert view.state == "running"


def test_a_pass_over_rows_says_rows_done_of_total():
    run = RunProgress()
    for event in planned():
        run.feed(event)
    step = "breast_cancer_ingest"
    assert run.feed(StepStarted(step, T0)) == []  # two stages: they start with their messages
    run.feed(miss("raw_data", step, T0))
    run.feed(miss("validated_features", step, T0 + 1))
    said = row_lines("validated", 4000, [1000, 1000])
    (view,) = run.feed(StageLog(step, said[-1], T0 + 3))
    assert view.stage == "validated_features"
    assert view.progress_text() == "validated 2,000/4,000 rows"
    assert view.eta_text() == "about 10 s left"  # 200 rows/s, 2,000 to go
    (view,) = run.feed(StageLog(step, row_lines("labelled and split", None, [10])[-1], T0 + 4))
    assert view.progress_text() == "labelled and split 10 rows" and view.eta_s is None


def run_events(trials: int, trial_s: float) -> list:
    """A whole run: an observation, a two-stage step, a tuned training, a deployment."""
    lines = training_lines()
    at = T0
    events = [*planned(), StepStarted("breast_cancer__raw_source", at),
              StepEnded("breast_cancer__raw_source", at + 0.1),
              StepStarted("breast_cancer_ingest", at), miss("raw_data", "breast_cancer_ingest",
                                                            at),
              miss("validated_features", "breast_cancer_ingest", at),
              Materialized("breast_cancer_ingest", M, "raw_data", "miss", 0.4,
                           "141 KiB", at + 0.4),
              Materialized("breast_cancer_ingest", M, "validated_features", "miss", 4.0,
                           "569 rows", at + 4),
              StepEnded("breast_cancer_ingest", at + 4)]
    step = "breast_cancer__trained_weights"
    at += 5
    events += [StepStarted(step, at), miss("trained_weights", step, at),
               StageLog(step, f"Optuna study s: {trials} trials; more workers can join", at)]
    for n in range(trials):
        at += trial_s
        lines.trial(n)
        events.append(StageLog(step, lines.said[-1], at))
    for e in range(1, 21):
        at += 0.05
        lines.epoch(e, 40)
        events.append(StageLog(step, lines.said[-1], at))
    events += [Materialized(step, M, "trained_weights", "miss", at - T0 - 5, "x trials", at),
               StepEnded(step, at),
               StepStarted("breast_cancer__deployment", at),
               StageLog("breast_cancer__deployment", "version 1: deployed as stable", at),
               Materialized("breast_cancer__deployment", M, "deployment", "-", None,
                            "deployed v1 as stable", at + 0.5),
               StepEnded("breast_cancer__deployment", at + 0.5)]
    return events


def plain_output(events: list) -> list[str]:
    out = io.StringIO()
    with ProgressDisplay(out, live=False) as display:
        display.feed(events)
    return out.getvalue().splitlines()


def test_plain_lines_one_per_stage_and_a_few_while_a_long_one_runs():
    lines = plain_output(run_events(trials=40, trial_s=3.0))
    finals = [line for line in lines if re.search(r", [0-9.]+ s$", line)]
    assert finals == [f"  {M}/raw_data: miss, 141 KiB, 0.40 s",
                      f"  {M}/validated_features: miss, 569 rows, 4.00 s",
                      f"  {M}/trained_weights: miss, x trials, 121.00 s",
                      f"  {M}/deployment: deployed v1 as stable, 0.50 s"]
    # 40 trials over two minutes: a line at each quarter, not one per trial; then the
    # final fit's first quarter (its previous line is long past).
    running = [line for line in lines if line not in finals]
    assert running[:3] == [f"  {M}/trained_weights: miss, 10/40 trials, about 1 min 30 s left",
                           f"  {M}/trained_weights: miss, 20/40 trials, about 1 min 00 s left",
                           f"  {M}/trained_weights: miss, 30/40 trials, about 30 s left"]
    assert len(running) == 4 and running[3].startswith(
        f"  {M}/trained_weights: miss, 10/40 epochs, at most ")
    assert lines.index(running[0]) == 2 and lines[-1] == finals[-1]


def test_a_quick_run_prints_only_the_stages_ends():
    lines = plain_output(run_events(trials=6, trial_s=0.5))
    assert len(lines) == 4 and all(line.endswith(" s") for line in lines)
    assert not any("raw_source" in line for line in lines)  # an observation, not a stage


def test_a_failed_step_says_its_line_even_before_any_stage_started():
    out = io.StringIO()
    with ProgressDisplay(out, live=False) as display:
        display.feed([*planned(), StepStarted("breast_cancer_ingest", T0),
                      StepEnded("breast_cancer_ingest", T0 + 1,
                                failure="data.csv: source is a directory; point at a file")])
    assert out.getvalue() == (f"  {M}/raw_data: FAILED: data.csv: source is a directory; "
                              "point at a file\n")


def test_the_live_table_draws_a_bar_per_running_stage():
    from rich.console import Console

    run, lock = RunProgress(), threading.RLock()
    table = LiveTable(io.StringIO(), run, lock)
    events = run_events(trials=8, trial_s=1.0)
    # Up to the fourth trial of eight: the ingest stages are done, training is half way.
    cut = next(i for i, e in enumerate(events)
               if isinstance(e, StageLog) and e.text.startswith("trial 3:"))
    for event in events[:cut + 1]:
        run.feed(event)
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(table._render())
    rows = out.getvalue().splitlines()
    assert [row.split()[0] for row in rows] == [f"{M}/raw_data", f"{M}/validated_features",
                                                f"{M}/trained_weights"]
    assert "569 rows" in rows[1] and rows[1].rstrip().endswith("4.00 s")
    assert "4/8 trials" in rows[2] and "━" in rows[2]


def test_deployment_lines_never_say_vnone():
    def outcome(**fields) -> DeploymentOutcome:
        return DeploymentOutcome(**{"model": M, "outcome": "deployed", "version": "2",
                                    "stable_version": "1", "canary_version": "none",
                                    "history_entry": 2} | fields)

    assert deployment_line(outcome()).startswith("deployment: stable v1, no canary")
    assert deployment_line(outcome(canary_version="2")).startswith(
        "deployment: stable v1, canary v2")
    lone_canary = deployment_line(outcome(stable_version="none", canary_version="3"))
    assert lone_canary.startswith("deployment: no stable model, canary v3")
    assert deployment_text(outcome(outcome="rejected", version="None")) == "rejected"
    assert deployment_text(outcome(outcome="unchanged", version="1")) == "unchanged v1"
    meta = outcome(role="canary").to_metadata()
    assert stage_summary(meta) == "deployed v2 as canary"
    assert "vnone" not in stage_summary(outcome(version="none").to_metadata())


def test_stage_summary_names_rows_trials_and_the_gate():
    assert stage_summary({"rows": 5000, "quarantined_rows": 12, "cache": "miss"}) == (
        "5,000 rows, 12 quarantined")
    assert stage_summary({"trials_complete": 4, "trials_pruned": 2, "epochs_run": 11}) == (
        "6 trials (2 pruned), 11 epochs")
    assert stage_summary({"gate": "passed", "roc_auc": 0.95058}) == (
        "gate passed, ROC AUC 0.951")
