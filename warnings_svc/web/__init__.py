"""The web side: the app factory and middleware, accounts and sessions, live events."""
