"""The edges: image files in and out, input listing and output naming, training crops from folders.

Engines never import this package; the API joins it with the engines.
"""
