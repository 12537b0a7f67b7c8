"""The web side: app factory and middleware, the JSON API and the console, accounts, sessions, live events."""
