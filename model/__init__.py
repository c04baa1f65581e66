"""Model layer: loading a local causal LM, prompt templates, guarded batched drafting."""
