"""The analysis: artifacts read as tables, divergences, metrics, summaries and plots (never decodes)."""
