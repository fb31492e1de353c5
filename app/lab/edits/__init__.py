"""Meta-training of editors and the DAFSet builder."""
