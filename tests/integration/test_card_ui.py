"""What the Dagster UI and the stored card show: plots inline, the gate's rule table.

One training run on real Adult rows; the checks are on what a user opens: the model
card's Markdown metadata (its plots as inline PNGs), the deploy_gate check's metadata
(verdict and rule table, no validation fields), the stored card.md (every file it names
is stored beside it) and card.html (Markdown rendered, plots inline).
"""

from __future__ import annotations

import base64
import re

from tests.conftest import fast_adult_spec, materializations

IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
GATE = {"fairness": {"demographic_parity_difference": {"absolute": 0.9, "use": "upper_bound"}}}


def test_card_gate_and_plots_as_the_ui_shows_them(tmp_path, home, adult_sample, chain_factory):
    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    chain = chain_factory(fast_adult_spec(tmp_path, source, gate=GATE))
    result = chain.run()
    assert result.success
    meta = materializations(result)
    card_md = meta["model_card"]["model_card"]

    # Every plot is inline in the UI's Markdown: ROC, calibration, one per sensitive column.
    images = {alt: url for alt, url in IMAGE.findall(card_md)}
    assert set(images) == {"ROC curves on the test rows", "Calibration on the test rows",
                           "Per-group rates by sex", "Per-group rates by race"}
    for url in images.values():
        assert url.startswith("data:image/png;base64,")
        png = base64.b64decode(url.split(",", 1)[1])
        assert png.startswith(b"\x89PNG") and len(png) < 120_000, "small PNGs"
    # Lineage from the raw data on, in the card shown for the run.
    raw = meta["raw_data"]["content_hash"]
    assert f"| raw_data | {raw} |" in card_md
    assert card_md.index("| raw_data |") < card_md.index("| validated_features |")

    # The deploy gate check: verdict and a table of its rules, nothing of validation.
    (check,) = [e.asset_check_evaluation_data for e in result.all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION"
                and e.asset_check_evaluation_data.check_name == "deploy_gate"]
    shown = {k: v.value for k, v in check.metadata.items()}
    assert set(shown) == {"verdict", "rules", "failed_rules", "champion_version"}
    assert shown["verdict"].startswith("PASSED" if check.passed else "BLOCKED")
    assert "| rule | value | limit | 95% interval | pass |" in shown["rules"]
    # The fairness rule judges the interval's upper bound, as the spec asked, and says so.
    fairness_rows = [line for line in shown["rules"].splitlines()
                     if "demographic_parity_difference (upper 95% bound) ≤ 0.9" in line]
    assert len(fairness_rows) == 2 and all(re.search(r"\| \[0\.\d{4}, 0\.\d{4}\] \|", line)
                                           for line in fairness_rows)

    # The stored card: every file card.md names is stored beside it.
    store = chain.store()
    manifest = store.get_manifest(meta["model_card"]["content_hash"])
    stored_md = store.get_bytes(manifest.files["card.md"]).decode()
    named = {url for _, url in IMAGE.findall(stored_md)} | set(
        re.findall(r"`([\w.-]+\.(?:png|html|json))`", stored_md))
    assert {"roc.png", "calibration.png", "fairness_sex.png", "fairness_race.png"} <= named
    assert named <= set(manifest.files), f"named but not stored: {named - set(manifest.files)}"

    # The HTML card: Markdown rendered (no literal ** or backticks), every plot inline.
    page = store.get_bytes(manifest.files["card.html"]).decode()
    text = re.sub(r"<[^>]+>", "", page)
    assert "**" not in text and "`" not in text
    assert "<table>" in page and re.search(r"<strong>(PASSED|BLOCKED)", page)
    assert page.count('src="data:image/png;base64,') == 4
