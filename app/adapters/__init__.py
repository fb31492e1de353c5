"""Technology: one sub-package per library. Heavy imports stay inside the modules."""
