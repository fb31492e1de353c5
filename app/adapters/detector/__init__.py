"""The long-tail detector: logistic regression over query-time signals."""
