"""The experiment: a scenario (YAML) in, a run folder of trials, test numbers, tables and
plots out. The command is ``python -m search.run``; plots are redrawn with
``python -m search.plot``.

Layers, each importing only from its own or a lower one (``tests/test_layout.py`` checks):

- data: ``errors``, ``seeds``, ``space`` (the search space), ``records`` (what trials
  and final networks record), ``sections`` and ``schema`` (the scenario), ``methods``
  (the table of methods, from which the scenario's ``baselines`` is made), ``config``
  (reading a scenario file);
- planning: ``plan`` (each method's trials, warm start, the optimiser, the final networks);
- running: ``trial`` (one trial, a pure function of plain data), ``executors``
  (sequential, processes, Dask), ``folder`` (the run folder), ``experiment`` (the
  loop over one scenario's trials and final networks);
- presentation: ``report`` (``results.json`` and its tables), ``summary`` (repeats over
  seeds), ``figures`` and ``plot``;
- the command: ``run``.
"""
