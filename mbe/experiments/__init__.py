"""Experiment drivers behind the notebooks: each returns DataFrames; plots live in :mod:`mbe.plots`."""
