"""The asyncio warning service."""
