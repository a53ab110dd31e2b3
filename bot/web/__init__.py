"""Lumi's HTTP side: health, metrics, signed downloads and the playground page."""
