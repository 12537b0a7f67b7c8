"""The warning lifecycle: states and their transitions, the store, the tamper-evident audit log."""
