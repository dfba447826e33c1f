"""The optimizer room: the only code that imports GEPA, MIPROv2 or BootstrapFewShot.

``run`` runs one optimizer and says how it ended; ``keeper`` saves what gepa does not (its random
state, the batch sampler's epoch) beside its own state and stops gracefully on Ctrl-C; ``resume``
decides where a target's state lives under pytest's cache and whether a saved one may continue.
"""
