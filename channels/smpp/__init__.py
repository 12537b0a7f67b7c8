"""SMS over SMPP v3.4: PDU codec, receipts and an asyncio ESME transceiver."""
