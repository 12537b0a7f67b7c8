"""Real protocol peers the integration tests talk to on 127.0.0.1 (not implemented by the project)."""
