"""Interfaces (typing.Protocol) the use cases need, in domain types."""
