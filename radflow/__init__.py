"""radflow: real-time drafting of radiology impressions inside a hospital's HL7 flow.

This package is the composition root: settings, the exception tree and the CLI. The layers
live in the top-level packages ``ingest``, ``streams``, ``model``, ``training`` and ``storage``.
"""

__version__ = "0.1.0"
