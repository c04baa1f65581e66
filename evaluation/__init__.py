"""`radflow eval`: the paper's tables for several systems side by side on held-out reports (run),
the report input and splits (inputs), saved drafts (drafting), tables (tables), and the
validation-chosen settings of the reranker (rerank) and consensus (consensus)."""
