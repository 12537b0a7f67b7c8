"""Dissemination: recipients, fan-out expansion, the outbox, dispatchers and their policies."""
