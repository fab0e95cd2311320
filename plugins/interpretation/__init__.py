"""Interpretation plugins: `zoo explain METHOD` (zoo list interpretation)."""
