"""radflow: real-time drafting of radiology impressions inside a hospital's HL7 flow.

This package is the composition root: the CLI, the services it starts (``radflow serve``), the
demo and its generated data. The layers live in the top-level packages ``ingest``, ``streams``,
``model``, ``training`` (with ``evaluation``, `radflow eval`, beside it) and ``storage``; what
they all share (codes, the exception tree, wire records, metrics, settings, the embedded broker)
is ``kernel``, which imports no layer. tests/unit/test_layers.py checks both directions.
"""

__version__ = "0.1.0"
