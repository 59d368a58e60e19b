"""Clips and images on their way to the browser: sources, previews, players, saving."""
