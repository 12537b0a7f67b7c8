"""The warning lifecycle: states and their transitions, the store, public alerts' read side, the audit log."""
