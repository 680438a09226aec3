"""Policy and topology documents: positioned trees, diagnostics and validation (pure)."""
