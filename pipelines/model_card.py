"""The model card: Markdown and HTML, with a ROC curve and a calibration plot."""

from __future__ import annotations

import base64
import html
import io
from typing import Any


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
    out["roc.png"] = _png(fig)
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
    out["calibration.png"] = _png(fig)
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
        out[f"fairness_{column}.png"] = _png(fig)
    plt.close("all")
    return out


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def render_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown (shown in the Dagster UI and logged to MLflow)."""
    variants = card["variants"]
    metric_names = ["roc_auc", "accuracy", "f1", "log_loss", "brier", "ece"]
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
        _gate_section(card["gate"]),
        "## Comparison with the champion",
        _champion_section(card),
        "## Baselines (scikit-learn, same rows and features)",
        _baselines_section(card),
        "## Fairness",
        _fairness_section(card["fairness"]),
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
        "ROC curve and calibration plot: see the HTML card (`card.html`).",
        "## Lineage",
        _table(["artifact", "content hash"], lineage_rows),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _gate_section(gate: dict[str, Any]) -> str:
    verdict = "**PASSED**" if gate["passed"] else "**BLOCKED**"
    basis = ("against absolute limits and the champion" if gate["compared_with_champion"]
             else "against absolute limits only (no champion yet)")
    rows = [["pass" if r["passed"] else "FAIL", r["rule"], r["value"], r["limit"]]
            for r in gate["rules"]]
    return f"{verdict}, judged {basis}.\n\n" + _table(["", "rule", "value", "limit"], rows)


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
              f"{lift:+.4f}. Both are fitted on the training rows alone; ROC curves: "
              "`roc.png`.\n\n" + settings
            + ("" if timed else "\n\nFit times are measured per run: see the "
                                "materialization's metadata."))


def _fairness_section(fairness: dict[str, Any]) -> str:
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
            + f"\n\nGroups under {result['min_group_size']} test rows are reported, not gated. "
              f"Bars: `fairness_{column}.png`.")
    return "\n\n".join(parts)


def render_html(markdown_text: str, images: dict[str, bytes]) -> str:
    """A self-contained HTML page: the card's tables plus the plots inline."""
    body = []
    in_table = False
    for line in markdown_text.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if set("".join(cells)) <= {"-"}:
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("### "):
            body.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    for name, png in images.items():
        data = base64.b64encode(png).decode()
        body.append(f'<img alt="{name}" src="data:image/png;base64,{data}">')
    style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto}"
             "td{border:1px solid #ccc;padding:2px 8px}table{border-collapse:collapse}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style>"
            f"<title>Model card</title></head><body>{''.join(body)}</body></html>")
