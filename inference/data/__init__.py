"""Data files shipped with the inference package (the object label table)."""
