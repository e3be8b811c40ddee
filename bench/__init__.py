"""Benchmarks of spacebot's email channel against local servers (not tests).

Run ``python -m bench`` (``--quick`` for a short run); see ``bench/__main__.py``.
"""
