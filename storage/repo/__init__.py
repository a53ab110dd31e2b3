"""Query functions, one module per aggregate: guild settings, moderation cases and image hashes,
comment records, 3D generation jobs, stored assets, and deleting a user's data.

Every function takes the session as a keyword argument and follows the conventions in
`storage.repo.common` (flush, never commit: the caller owns the transaction).
"""
