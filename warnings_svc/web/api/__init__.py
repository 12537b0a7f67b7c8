"""The JSON API: public alerts and feeds, warnings for forecasters, forecast runs, proposals, risk summary."""
