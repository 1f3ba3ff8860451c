"""WER as an `evaluate` metric: `evaluate.load("<this folder>")` (see `wer.py`)."""
