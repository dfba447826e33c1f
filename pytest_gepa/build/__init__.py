"""The build step: the ``gepa`` fixture's handle (``handle``) and the two flows it runs.

``compile`` optimizes a program and decides whether the candidate may replace the committed
artifact; ``gate`` loads the artifact and holds it to its thresholds. Both score through
``scoring``; ``target`` holds one compiled program's state and files, ``lms`` its metered LMs.
"""
