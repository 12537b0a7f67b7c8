"""Channel adapters: protocols and encodings, never the database."""
