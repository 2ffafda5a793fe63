"""The BayesFT search: scenarios, trials and where they run, reports and plots (``python -m search.run``)."""
