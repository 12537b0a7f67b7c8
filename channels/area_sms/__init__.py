"""Operator area SMS: the adapter HTTP JSON protocol (docs/channels/operator-area-sms.md) and its client."""
