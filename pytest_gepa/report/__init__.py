"""The run's gepa results: ``model`` (one ``TargetReport`` per target), ``terminal`` (the summary
lines), ``files`` (``--gepa-report`` as JSON, Markdown or HTML; ``page`` and ``templates/`` draw the HTML).

Kept light: importing the package imports none of its modules.
"""
