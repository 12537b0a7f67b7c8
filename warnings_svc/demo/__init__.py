"""The demo, never used in production: synthetic scenarios and forecast, users and recipients, smoke run."""
