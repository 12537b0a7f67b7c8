"""Webhooks to partners, signed per the Standard Webhooks specification (`signing`), and the channel that
posts them (`client`)."""
