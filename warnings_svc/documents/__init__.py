"""What a warning says: the message, its channel texts and wording, CAP 1.2 written and read, GB/T 35965.1."""
