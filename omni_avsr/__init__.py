"""Omni-AVSR for Hugging Face Transformers."""
