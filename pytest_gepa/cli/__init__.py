"""``pytest-gepa``, the command line tool (``python -m pytest_gepa``): ``merge`` and ``diff`` (``main``).

Nothing the plugin loads imports this package: it sits above the plugin in the import layers.
"""
