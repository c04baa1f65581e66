"""The kernel every layer may import: codes, the exception tree, the wire record base, metrics,
the settings object and the embedded broker. It imports no layer (tests/unit/test_layers.py)."""
