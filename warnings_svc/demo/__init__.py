"""The demo: synthetic scenarios, demo users and recipients, the smoke run (never used in production)."""
