"""The nouns of reconciler: documents, desired state, diagnostics. Pure."""
