"""A run's stages as its events tell them: the state behind the progress display.

:class:`RunProgress` folds a run's events (a step started, a stage's log message, a
materialization, a step's end) into one :class:`StageView` per stage: cache hit or miss,
how far it is (trials, epochs or rows, read from the stages' own progress messages), the
time left where it can be told, and at the end what it produced. The events are plain
records (``cli.console.run_events`` makes them from Dagster's event log), so the display
is tested by feeding it a sequence of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.records import DeploymentOutcome


@dataclass(frozen=True)
class Planned:
    """The run will materialize ``model/stage`` in ``step``."""

    step: str
    model: str
    stage: str


@dataclass(frozen=True)
class StepStarted:
    step: str
    at: float  # seconds since the epoch, as the event log stamps it


@dataclass(frozen=True)
class StageLog:
    """A message a step logged: a cache hit or miss, a trial, an epoch, rows done."""

    step: str
    text: str
    at: float


@dataclass(frozen=True)
class Materialized:
    step: str
    model: str
    stage: str
    cache: str  # hit | miss | - (the deployment: a change of state, not a memoized artifact)
    seconds: float | None
    summary: str  # what it produced, in a few words (see stage_summary)
    at: float


@dataclass(frozen=True)
class StepEnded:
    step: str
    at: float
    failure: str | None = None  # the failed step's one line


RunEvent = Planned | StepStarted | StageLog | Materialized | StepEnded


def version_label(label: object) -> str | None:
    """``v3`` for a version, None for none (a deployment state may have no canary)."""
    text = str(label).strip() if label is not None else ""
    return None if text.lower() in ("", "none", "null") else f"v{text}"


def deployment_text(outcome: DeploymentOutcome) -> str:
    """``deployed v3``, ``unchanged v2`` or ``rejected`` (never ``vnone``)."""
    version = version_label(outcome.version)
    return outcome.outcome + (f" {version}" if version else "")


def stage_summary(meta: Mapping[str, Any]) -> str:
    """What a stage's materialization produced, in a few words, from its metadata."""
    from pipelines.records import DeploymentOutcome

    if "outcome" in meta:
        try:
            deployed = DeploymentOutcome.from_metadata(meta)
        except ValueError:
            return str(meta["outcome"])
        role = f" as {deployed.role}" if deployed.role else ""
        return deployment_text(deployed) + role
    parts = []
    if isinstance(meta.get("rows"), int):
        quarantined = meta.get("quarantined_rows") or 0
        parts.append(f"{meta['rows']:,} rows" + (f", {quarantined:,} quarantined"
                                                  if quarantined else ""))
    elif isinstance(meta.get("bytes"), int):
        parts.append(f"{meta['bytes'] / 1024:,.0f} KiB")
    trials = (meta.get("trials_complete") or 0) + (meta.get("trials_pruned") or 0)
    if trials:
        parts.append(f"{trials} trials ({meta.get('trials_pruned') or 0} pruned)")
    if meta.get("epochs_run"):
        parts.append(f"{meta['epochs_run']} epochs")
    if isinstance(meta.get("published_variants"), list):
        parts.append(" ".join(str(v) for v in meta["published_variants"]))
    if meta.get("gate"):
        parts.append(f"gate {meta['gate']}")
    if isinstance(meta.get("roc_auc"), float):
        parts.append(f"ROC AUC {meta['roc_auc']:.3f}")
    return ", ".join(parts)


def duration(seconds: float) -> str:
    """``8 s``, ``1 min 05 s``, ``2 h 03 min``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


@dataclass
class StageView:
    """What the terminal knows of one stage."""

    model: str
    stage: str
    step: str
    started: float
    updated: float
    cache: str = ""
    phase: str = ""  # "trial", "epoch", or what a pass over rows does ("validated", ...)
    done: float = 0.0
    total: float | None = None
    unit: str = ""  # "rows" for a pass over rows
    phase_started: float = 0.0
    eta_s: float | None = None  # time left as estimated at `eta_at`
    eta_at: float = 0.0
    upper_bound: bool = False  # early stopping may end the phase sooner
    summary: str = ""  # what it produced, or the failure's line
    seconds: float | None = None
    state: str = "running"  # running | done | failed

    @property
    def name(self) -> str:
        return f"{self.model}/{self.stage}" if self.model else self.stage

    def progress_text(self) -> str:
        """``2/6 trials``, ``11/42 epochs``, ``validated 1,024/5,000 rows``: how much is done."""
        if not self.phase:
            return ""
        total = f"/{self.total:,.0f}" if self.total else ""
        if self.unit:
            return f"{self.phase} {self.done:,.0f}{total} {self.unit}"
        return f"{int(self.done)}{total} {self.phase}s"

    def eta_text(self, now: float | None = None) -> str:
        """``about 8 s left`` (``at most`` where early stopping may end it sooner)."""
        if self.eta_s is None:
            return ""
        left = self.eta_s - (max(now - self.eta_at, 0.0) if now is not None else 0.0)
        if left < 0.5:  # past the estimate: the stage's last steps
            return ""
        return ("at most " if self.upper_bound else "about ") + duration(left) + " left"

    def line(self) -> str:
        """The plain line: how far a running stage is, or what a finished one did."""
        if self.state == "failed":
            return f"  {self.name}: FAILED: {self.summary}"
        cache = self.cache if self.cache not in ("", "-") else ""
        if self.state == "running":
            parts = [cache or "running", self.progress_text(), self.eta_text()]
        else:
            parts = [cache, self.summary, f"{self.seconds or 0.0:.2f} s"]
        return f"  {self.name}: " + ", ".join(p for p in parts if p)


_CACHE = re.compile(r"^(\w+): cache (hit|miss) for recipe ")
_STUDY = re.compile(r"^Optuna study \S+: (\d+) trials")
_TRIAL = re.compile(r"^trial (\d+): ")
_EPOCH = re.compile(r"^epoch (\d+)/(\d+): train loss ")
_IN_EPOCH = re.compile(r"^epoch (\d+)/(\d+): ([\d,]+)/([\d,]+) rows, [\d,.]+ rows/s"
                       r"(?:, at most ([\d.]+) min left)?$")
_ROWS = re.compile(r"^(.+?): ([\d,]+)(?: of ([\d,]+))? rows \(.*?"
                   r"(?:, about ([\d,]+) s left)?\)$")


def _number(text: str) -> int:
    return int(text.replace(",", ""))


class RunProgress:
    """The stages of one run as its events say, in the order they started."""

    def __init__(self) -> None:
        self.views: dict[tuple[str, str], StageView] = {}
        self._planned: dict[str, list[tuple[str, str]]] = {}
        self._current: dict[str, StageView] = {}  # by step: the stage its messages are about

    def feed(self, event: RunEvent) -> list[StageView]:
        """Take one event; returns the views it changed."""
        if isinstance(event, Planned):
            self._planned.setdefault(event.step, []).append((event.model, event.stage))
        elif isinstance(event, StepStarted):
            planned = self._planned.get(event.step, [])
            if len(planned) == 1:  # a multi-asset step: its stages start with their messages
                return [self._start(event.step, *planned[0], event.at)]
        elif isinstance(event, StageLog):
            return self._message(event)
        elif isinstance(event, Materialized):
            view = self._start(event.step, event.model, event.stage, event.at)
            view.cache, view.summary, view.state = event.cache, event.summary, "done"
            view.seconds = event.seconds if event.seconds is not None else (
                event.at - view.started)
            view.updated = event.at
            return [view]
        elif isinstance(event, StepEnded):
            return self._ended(event)
        return []

    def _model_of(self, step: str, stage: str) -> str:
        for model, planned in self._planned.get(step, []):
            if planned == stage:
                return model
        return step.rsplit("__", 1)[0] if "__" in step else ""

    def _start(self, step: str, model: str, stage: str, at: float) -> StageView:
        view = self.views.get((model, stage))
        if view is None:
            view = self.views[(model, stage)] = StageView(model, stage, step, started=at,
                                                          updated=at, phase_started=at)
        self._current[step] = view
        return view

    def _message(self, event: StageLog) -> list[StageView]:
        cache = _CACHE.match(event.text)
        if cache:
            view = self._start(event.step, self._model_of(event.step, cache[1]), cache[1],
                               event.at)
            view.cache, view.updated = cache[2], event.at
            return [view]
        view = self._current.get(event.step)
        if view is None or view.state != "running" or not self._advance(view, event.text,
                                                                         event.at):
            return []
        view.updated = event.at
        return [view]

    def _advance(self, view: StageView, text: str, at: float) -> bool:
        if m := _STUDY.match(text):
            self._phase(view, "trial", int(m[1]))
        elif m := _TRIAL.match(text):
            if view.phase != "trial":
                self._phase(view, "trial", None)
            done = max(view.done + 1, int(m[1]) + 1)
            view.done = min(done, view.total) if view.total else done
            self._estimate(view, at, upper=False)
        elif m := _EPOCH.match(text):
            if view.phase != "epoch":
                self._phase(view, "epoch", int(m[2]))
            view.done, view.total = int(m[1]), int(m[2])
            self._estimate(view, at, upper=True)
        elif m := _IN_EPOCH.match(text):
            if view.phase != "epoch":
                self._phase(view, "epoch", int(m[2]))
            view.done = int(m[1]) - 1 + _number(m[3]) / max(_number(m[4]), 1)
            if m[5] is not None:
                view.eta_s, view.eta_at, view.upper_bound = float(m[5]) * 60, at, True
            else:
                self._estimate(view, at, upper=True)
        elif m := _ROWS.match(text):
            total = _number(m[3]) if m[3] else None
            if view.phase != m[1]:
                self._phase(view, m[1], total)
            view.unit, view.done, view.total = "rows", _number(m[2]), total
            view.eta_s = float(_number(m[4])) if m[4] else None
            view.eta_at, view.upper_bound = at, False
        else:  # a note (a resumed checkpoint, a reused registry version): nothing to count
            return False
        return True

    @staticmethod
    def _phase(view: StageView, phase: str, total: int | None) -> None:
        # The phase began when the stage's previous event arrived.
        view.phase, view.done, view.total, view.unit = phase, 0.0, total, ""
        view.phase_started, view.eta_s = view.updated, None

    @staticmethod
    def _estimate(view: StageView, at: float, upper: bool) -> None:
        if view.total and view.done > 0:
            rate = (at - view.phase_started) / view.done
            view.eta_s, view.eta_at = rate * max(view.total - view.done, 0), at
            view.upper_bound = upper

    def _ended(self, event: StepEnded) -> list[StageView]:
        running = [v for v in self.views.values()
                   if v.step == event.step and v.state == "running"]
        if event.failure is None:
            # Nothing materialized: an observation (raw_source), or an output not produced.
            for view in running:
                del self.views[(view.model, view.stage)]
            return []
        if not running:  # failed before any stage of the step said it had started
            planned = self._planned.get(event.step) or [("", event.step)]
            running = [self._start(event.step, *planned[0], event.at)]
        for view in running:
            view.state, view.summary, view.updated = "failed", event.failure, event.at
        return running
