"""Training of the prompt rewriter (SFT, RL) and fitting of the preference reward."""
