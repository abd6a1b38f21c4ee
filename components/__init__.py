"""Pulumi ComponentResources of the rag-websocket stack (DESIGN §1)."""
