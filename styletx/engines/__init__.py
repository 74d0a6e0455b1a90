"""The engines: optimisation of the pixels (:mod:`.optimize`) and feed-forward networks (:mod:`.feedforward`).

Each engine is a room of its own: it takes tensors and options, returns tensors and a record, and imports
neither the I/O edges (:mod:`styletx.io`) nor another engine.
"""
