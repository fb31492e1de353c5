"""Prompt rewriters (PromptRewriter adapters)."""
