"""The bundled demo data: scikit-learn's breast-cancer set, which ships inside the package.

Its packaged CSV has a non-standard first line, so it is loaded through scikit-learn and
written once as Parquet where the demo spec points.
"""

from __future__ import annotations

from pathlib import Path


def write_breast_cancer(path: str | Path) -> Path:
    """Write the data set as Parquet (once); returns the path."""
    path = Path(path)
    if path.exists():
        return path
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.copy()
    frame["diagnosis"] = [str(bunch.target_names[t]) for t in frame.pop("target")]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
