"""Export a run directory to SavedModel, TFLite (float32, dynamic, float16, int8) and ONNX, and run
the TFLite files with LiteRT (`export.runner`).

    import export
    report = export.export_run("runs/bert_small", formats="saved_model,tflite_int8")

`export_run` is imported on first use, so `export.runner` starts without loading the exporters.
"""

from __future__ import annotations

__all__ = ["ExportError", "export_run"]


def __getattr__(name: str):
    if name == "export_run":
        from export.exporter import export_run

        return export_run
    if name == "ExportError":
        from export.spec import ExportError

        return ExportError
    raise AttributeError(f"module 'export' has no attribute {name!r}")
