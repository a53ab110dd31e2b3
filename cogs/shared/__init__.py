"""What every feature of the Discord layer shares: reading a post, persistent buttons, rate limits.

Not an extension: the cogs import these modules directly.
"""
