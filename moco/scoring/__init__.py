"""Layer 1, scoring: prompts and scoring for the 12 task types, the one answer extractor, judges, IFEval, noncompliance, code scoring and its sandbox."""
