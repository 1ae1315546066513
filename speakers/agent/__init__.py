"""The reference speaker agent (asyncio): verification, device rules, media cache, outputs."""
