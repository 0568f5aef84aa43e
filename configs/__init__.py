"""One config file per registered model: architecture changes for training plus training defaults.

`zoo.get_config(name)` merges the registered architecture with `configs/<name>.py`.
"""
