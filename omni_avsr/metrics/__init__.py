"""Metrics in `evaluate`'s format, loadable offline with `evaluate.load(<folder>)`."""
