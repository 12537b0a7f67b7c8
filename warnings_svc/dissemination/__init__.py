"""Dissemination: recipients, fan-out expansion, delivery states, the outbox, dispatchers, policy, metrics."""
