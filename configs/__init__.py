"""Training configs: `configs/base.py` holds every field's default; one file per model family
(`configs/<family>.py`) changes what its family needs, `get_config(name)` for any size of it.
`trainers.config.defaults(name)` adds the registered architecture; `trainers.config.resolve`
checks and freezes the result."""
