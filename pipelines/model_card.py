"""The model card: Markdown and HTML, with ROC, calibration and per-group plots.

The stored ``card.md`` names its plots by file name (they are stored beside it); the HTML
card and the card shown in the Dagster UI carry them inline as data URLs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.figures import image, inline, png

METRIC_NAMES = ["roc_auc", "accuracy", "f1", "log_loss", "brier", "ece"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plots(y: Any, probabilities: dict[str, Any],
          references: dict[str, Any] | None = None) -> dict[str, bytes]:
    """PNG bytes of the ROC curves and the reliability diagram for each variant.

    ``references`` (label -> probabilities on the same rows: the baselines, the champion)
    are drawn dashed on the ROC plot beside the variants.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.evaluation import calibration, roc_points

    out = {}
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    for variant, p in probabilities.items():
        pts = roc_points(y, p)
        ax.plot(pts["fpr"], pts["tpr"], label=variant)
    for label, p in (references or {}).items():
        pts = roc_points(y, p)
        ax.plot(pts["fpr"], pts["tpr"], "--", lw=1.2, label=label)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test rows)")
    ax.legend(loc="lower right", fontsize=7)
    out["roc.png"] = png(fig)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    for variant, p in probabilities.items():
        cal = calibration(y, p)
        pts = [(m, f, n) for m, f, n in zip(cal["mean_predicted"], cal["fraction_positive"],
                                            cal["count"]) if m is not None]
        line = ax.plot([a for a, _, _ in pts], [b for _, b, _ in pts], "-", lw=1, alpha=0.6,
                       label=variant)[0]
        ax.scatter([a for a, _, _ in pts], [b for _, b, _ in pts], color=line.get_color(),
                   s=[12 + 300 * n / len(y) for _, _, n in pts], alpha=0.8)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.text(0.98, 0.02, "marker area ∝ rows in bin", ha="right", fontsize=8,
            transform=ax.transAxes)
    ax.set(xlabel="mean predicted probability", ylabel="observed positive fraction",
           title="Calibration (test rows)")
    ax.legend(loc="upper left")
    out["calibration.png"] = png(fig)
    plt.close("all")
    return out


def fairness_plots(fairness: dict[str, Any]) -> dict[str, bytes]:
    """Per-group bars (selection rate, TPR, FPR) for each sensitive column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for column, result in fairness.items():
        groups = list(result["groups"])
        fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(groups) + 2), 3.6), dpi=100)
        width = 0.27
        for i, rate in enumerate(("selection_rate", "true_positive_rate",
                                  "false_positive_rate")):
            xs = [j + (i - 1) * width for j in range(len(groups))]
            ax.bar(xs, [result["groups"][g][rate] for g in groups], width,
                   label=rate.replace("_", " "))
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{g}\n(n={result['groups'][g]['count']}"
                            f"{'' if result['groups'][g]['gated'] else ', not gated'})"
                            for g in groups], fontsize=8)
        ax.set(ylim=(0, 1), title=f"Per-group rates by {column} (test rows)")
        ax.legend(fontsize=8)
        out[f"fairness_{column}.png"] = png(fig)
    plt.close("all")
    return out


def render_markdown(card: dict[str, Any], urls: Mapping[str, str] | None = None) -> str:
    """The card as Markdown (shown in the Dagster UI and logged to MLflow).

    Args:
        card: The card's content (``card.json``, plus the run's facts when shown for a run).
        urls: Where each plot is shown from, by file name; by default the file name itself,
            for a ``card.md`` with its plots beside it.
    """
    variants = card["variants"]
    metric_names = METRIC_NAMES
    metric_rows = [[v] + [variants[v]["metrics"][m] for m in metric_names] for v in variants]
    # Latency is a fact of the run, not of the model: the stored card (its bytes are a
    # function of the recipe) leaves it out; the card shown for a run puts it in.
    timed = all("latency" in variants[v] for v in variants)
    perf_rows = [[v, variants[v]["size_bytes"],
                  *([variants[v]["latency"][0]["median_ms"], variants[v]["latency"][1]["median_ms"]]
                    if timed else []),
                  variants[v]["parity_max_abs_diff"]] for v in variants]
    perf_head = ["variant", "bytes", *(["ms @ batch 1", "ms @ batch 256"] if timed else []),
                 "max abs Δp vs fp32"]
    lineage_rows = [[k, v] for k, v in card["lineage"].items()]
    t = card["training"]
    head = [
        f"# Model card: {card['dataset']}",
        card.get("description") or "",
    ]
    parts = head + [
        "## Deploy gate",
        gate_section(card["gate"]),
        "## Comparison with the champion",
        _champion_section(card),
        "## Baselines (scikit-learn, same rows and features)",
        _baselines_section(card),
        *(["## Cost", _cost_section(card["cost"])] if card.get("cost") else []),
        "## Fairness",
        _fairness_section(card["fairness"], urls),
        "## Intended use", card["intended_use"],
        "## Limitations", card["limitations"],
        "## Data",
        f"Target `{card['target']}` (positive class `{card['positive']}`); "
        f"{card['rows']['train']} training, {card['rows']['val']} validation and "
        f"{card['rows']['test']} test rows; {card['rows']['quarantined']} rows quarantined "
        f"by validation. Features: {', '.join(f'`{c}`' for c in card['features'])}.",
        "## Metrics on held-out test rows",
        _table(["variant", *metric_names], metric_rows),
        "## Size and latency (ONNX Runtime, CPU, 1 thread)" if timed else "## Size",
        _variants_line(card),
        _table(perf_head, perf_rows) + ("" if timed else
                                        "\n\nLatency is measured per run: see the "
                                        "materialization's metadata in the Dagster UI."),
        "## Training",
        f"Architecture `{t.get('architecture', 'mlp')}`"
        + (f", hidden layers {t['hidden']}" if t.get("hidden") else "")
        + f"; best epoch {t['best_epoch']} of {t['epochs_run']} (early stopping, patience "
        f"{t['patience']}), device `{t['device']}`.",
        "## Plots",
        image("ROC curves on the test rows", "roc.png", urls) + "\n\n"
        + image("Calibration on the test rows", "calibration.png", urls),
        "## Lineage",
        _table(["artifact", "content hash"], lineage_rows)
        + ("" if "raw_data" in card["lineage"] else
           "\n\nThe raw data a run read is named in the card shown for that run (Dagster "
           "UI): the same validated features can come from more than one raw version."),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def gate_verdict(gate: dict[str, Any]) -> str:
    """The gate's verdict in one line: passed or blocked, how many rules, judged how."""
    failed = sum(not r["passed"] for r in gate["rules"])
    verdict = ("**PASSED**" if gate["passed"]
               else f"**BLOCKED** ({failed} of {len(gate['rules'])} rules fail)")
    basis = ("against absolute limits and the champion" if gate["compared_with_champion"]
             else "against absolute limits only (no champion yet)")
    return f"{verdict}, judged {basis}."


def gate_table(gate: dict[str, Any]) -> str:
    """The gate's rules as a Markdown table: rule, value, limit, 95% interval, pass."""
    rows = [[r["rule"], r["value"], r["limit"],
             f"[{r['interval'][0]:.4f}, {r['interval'][1]:.4f}]" if r.get("interval") else "",
             "pass" if r["passed"] else "**FAIL**"] for r in gate["rules"]]
    return _table(["rule", "value", "limit", "95% interval", "pass"], rows)


def gate_section(gate: dict[str, Any]) -> str:
    return f"{gate_verdict(gate)}\n\n{gate_table(gate)}"


def _champion_section(card: dict[str, Any]) -> str:
    champion = card.get("champion")
    if not champion:
        return "No champion yet: this model is judged on absolute limits alone."
    if champion.get("missing_columns"):
        return (f"Champion: registry version {champion['version']}; it could not be scored on "
                f"these rows: it needs columns {champion['missing_columns']}.")
    names = ["roc_auc", "accuracy", "f1", "log_loss", "brier", "ece"]
    cand = card["variants"]["fp32"]["metrics"]
    rows = [[m, cand[m], champion["metrics"][m], cand[m] - champion["metrics"][m]]
            for m in names]
    return (f"Champion: registry version {champion['version']} "
            f"(`{champion['trained_weights'][:19]}…`), scored on the same test rows.\n\n"
            + _table(["metric", "candidate", "champion", "difference"], rows))


def _variants_line(card: dict[str, Any]) -> str:
    line = "Variants: published " + ", ".join(f"`{v}`" for v in card["variants"]) + "."
    dropped = card.get("dropped_variants") or {}
    if dropped:
        line += " Dropped (served as `fp32`): " + "; ".join(
            f"`{v}` ({reason})" for v, reason in dropped.items()) + "."
    return line


def _baselines_section(card: dict[str, Any]) -> str:
    baselines = card.get("baselines") or {}
    if not baselines:
        return "No baselines were scored."
    names = ["roc_auc", "accuracy", "f1", "log_loss", "brier", "ece"]
    # Fit seconds are a fact of the run: only the card shown for a run has them.
    timed = all("fit_seconds" in b for b in baselines.values())
    rows = [["candidate (fp32)", *(card["variants"]["fp32"]["metrics"][m] for m in names),
             *(["—"] if timed else [])]]
    champion = card.get("champion")
    if champion and champion.get("metrics"):
        rows.append([f"champion v{champion['version']}",
                     *(champion["metrics"][m] for m in names), *(["—"] if timed else [])])
    rows += [[b["title"], *(b["metrics"][m] for m in names),
              *([f"{b['fit_seconds']:.2f}"] if timed else [])] for b in baselines.values()]
    best = max(baselines.values(), key=lambda b: b["metrics"]["roc_auc"])
    lift = card["variants"]["fp32"]["metrics"]["roc_auc"] - best["metrics"]["roc_auc"]
    settings = "\n".join(f"- {b['title']}: {b['settings']}." for b in baselines.values())
    return (_table(["model", *names, *(["fit seconds"] if timed else [])], rows)
            + f"\n\nThe candidate's ROC AUC lift over the best baseline ({best['title']}): "
              f"{lift:+.4f}. Both are fitted on the training rows alone; their ROC curves are "
              "drawn dashed under Plots.\n\n" + settings
            + ("" if timed else "\n\nFit times are measured per run: see the "
                                "materialization's metadata."))


def _hardware(where: dict[str, Any]) -> str:
    cores = f"{where['cpu_model']}, {where['cpu_cores']} cores"
    return cores + (f", GPU {where['gpu']}" if where.get("gpu") else "")


def _money(spent: dict[str, Any]) -> str:
    return f"{spent['amount']:.6f} {spent['currency']}"


def _cost_section(bill: dict[str, Any]) -> str:
    """The run's compute and what it cost: the training, and each baseline's fit.

    A fact of the run (measured seconds, the prices of the day): only the card shown for a
    run has it.
    """
    rows = []
    training = bill.get("training")
    if training:
        rows.append(["training (trained_weights)", _hardware(training["hardware"]),
                     f"{training['cpu_seconds']:.2f}", f"{training['gpu_seconds']:.2f}",
                     _money(training)])
    for b in bill["baselines"].values():
        rows.append([f"{b['title']} (baseline fit, {b['threads']} thread"
                     f"{'' if b['threads'] == 1 else 's'})", _hardware(b["hardware"]),
                     f"{b['cpu_seconds']:.2f}", "—", _money(b)])
    price = bill["prices"]
    gpus = ", ".join(f"{name} {value:g}" for name, value in sorted(price["gpu_hour"].items()))
    if price["cpu_core_hour"] or gpus:
        priced = (f"Priced at {price['cpu_core_hour']:g} {price['currency']} per CPU core-hour"
                  + (f" and per GPU-hour {gpus}" if gpus else "") + ".")
    else:
        priced = ("No prices are set (the spec's `cost` section, or TIDELINE_PRICE_CPU_CORE_HOUR "
                  "and TIDELINE_PRICE_GPU_HOUR): costs read 0.")
    missing = "" if training else (
        " The training's cost is unknown to this run: the trained_weights materialization "
        "it used recorded none for these weights.")
    return (_table(["what", "hardware", "CPU seconds", "GPU seconds", "cost"], rows)
            + "\n\nCPU seconds are the process's CPU time for the training (every core, tuning "
              "trials included) and a baseline's fit seconds times its threads; GPU seconds "
              "are the wall time of tuning and fitting on the GPU. " + priced + missing)


def _fairness_section(fairness: dict[str, Any], urls: Mapping[str, str] | None) -> str:
    if not fairness:
        return "The dataset spec names no sensitive columns."
    parts = []
    for column, result in fairness.items():
        rows = [[g, v["count"], v["selection_rate"], v["true_positive_rate"],
                 v["false_positive_rate"], "yes" if v["gated"] else "no (too small)"]
                for g, v in result["groups"].items()]
        diffs = [[name, value, f"[{result['intervals'][name][0]:.4f}, "
                               f"{result['intervals'][name][1]:.4f}]"]
                 for name, value in result["differences"].items()]
        parts.append(
            f"### {column}\n\n"
            + _table(["group", "rows", "selection rate", "TPR", "FPR", "gated"], rows)
            + "\n\n" + _table(["difference (gated groups)", "value", "95% bootstrap CI"], diffs)
            + f"\n\nGroups under {result['min_group_size']} test rows are reported, not "
              "gated.\n\n" + image(f"Per-group rates by {column}", f"fairness_{column}.png",
                                    urls))
    return "\n\n".join(parts)


def render_html(card: dict[str, Any], images: Mapping[str, bytes]) -> str:
    """A self-contained HTML page of the card, its plots inline.

    The Markdown is rendered by markdown-it (CommonMark with tables); raw HTML in the
    spec's texts is shown as text, not interpreted.
    """
    import html

    from markdown_it import MarkdownIt

    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = renderer.render(render_markdown(card, inline(images)))
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
             "img{max-width:100%}code{background:#f4f4f4;padding:0 3px}")
    title = html.escape(f"Model card: {card['dataset']}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{style}</style></head><body>{body}</body></html>")
