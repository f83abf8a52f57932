"""Applying models to whole Sentinel-2 scenes: windowed inference and the products made from it."""
