"""One module per use case: orchestrates ports and owns the transaction."""
