"""The BayesFT search, scenarios, reports and plots (built in a later issue)."""
