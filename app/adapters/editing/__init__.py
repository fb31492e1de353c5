"""Model editors of transformers causal LMs: DAFNet, MEND, FT-L, GRACE, and their evaluator."""
