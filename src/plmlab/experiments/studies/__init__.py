"""One module per experiment, each defining `EXPERIMENT` (plmlab.experiments.base.Experiment);
the registry in plmlab/experiments/__init__.py lists them in MODULES."""
