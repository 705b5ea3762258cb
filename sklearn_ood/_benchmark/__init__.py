"""The work behind the ``sklearn-ood benchmark`` command (private).

One module per step, in the order a run takes them:

* ``_data``: the ID / OOD sets of a preset or of the user's files;
* ``_training``: the model (trained and cached, or the user's file);
* ``_catalogue``: every detector of ``all_detectors()`` that applies;
* ``_run``: ``evaluate`` per seed, then mean and spread over the seeds;
* ``_report``: the printed table, ``results.csv``, ``results.json`` and the
  figures.

``sklearn_ood.cli`` parses the arguments and calls :func:`_run.run_benchmark`.
No module here imports torch at import time (``pytest --doctest-modules``
imports them on NumPy-only installs too); the functions that need it import
it when called.
"""
