"""Entities, value objects, errors and pure policies. No framework imports."""
