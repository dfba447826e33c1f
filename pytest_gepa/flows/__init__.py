"""The ``gepa`` fixture's handle (``handle``) and the two flows it runs for one test.

``compile`` optimizes a program and decides whether the candidate may replace the committed
artifact; ``gate`` loads the artifact and holds it to its thresholds. Both score through
``scoring``; ``target`` holds one compiled program's state and files, ``target_lms`` its metered
LMs. The optimizer itself runs in ``pytest_gepa.optimizer``.
"""
