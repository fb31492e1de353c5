"""Rewards of prompt sessions (RewardModel adapters)."""
