"""One function per stage: inputs from the store in, a `StageResult` out."""
