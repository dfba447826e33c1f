"""The run's gepa results: ``model`` (one ``TargetReport`` per target), ``terminal`` (the summary
lines), ``files`` (``--gepa-report`` as JSON, Markdown or HTML; ``markdown`` the job summary, ``page``
and ``templates/`` the HTML), ``merge`` (reports of several runs as one), ``artifact_diff`` (two
versions of an artifact) and ``summary`` (``$GITHUB_STEP_SUMMARY``).

Kept light: importing the package imports none of its modules.
"""
