"""What a warning says: the message, its channel texts, CAP 1.2 and the GB/T 35965.1 profile."""
