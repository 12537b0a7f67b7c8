"""The JSON API: public alerts and feeds, warnings for forecasters."""
