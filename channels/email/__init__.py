"""Email to partners over SMTP: the Chinese text in the body, the CAP document attached (`client`)."""
