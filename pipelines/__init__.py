"""Orchestration only: the GLUE recipe, its evaluation and report, and the offline demo."""
