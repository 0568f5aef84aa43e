"""Training configs: one file per model family (`configs/<family>.py`), each `get_config(name)`
for any size of the family. `trainers.config.defaults(name)` merges it with the registered
architecture; `trainers.config.resolve` freezes the result."""
