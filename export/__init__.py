"""Export a run directory to SavedModel, TFLite (float32, dynamic, float16, int8) and ONNX
(`export.exporter.export_run`, `python -m export.run`), and run the TFLite files on device
(`export.runtime`, `python -m export.runner`).

This file imports nothing: `export.runtime` must load without TensorFlow, and every `export.*`
import runs it.
"""
