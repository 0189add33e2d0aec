"""The sweep runner and its command line: options, models, Lightning, Hydra's hooks, the artifact written."""
