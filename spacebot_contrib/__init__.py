"""Channels and agents that ship alongside the email channel (console, webhook, LLM)."""
