"""Training layer: LoRA refits on signed reports (issue #5)."""
