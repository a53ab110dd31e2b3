"""Discord-facing features: each cog checks input, defers when slow, calls one service, renders the reply."""
