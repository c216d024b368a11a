"""torch -> ONNX: dynamo first, TorchScript fallback (``exporters``), and facts about the graph (``graph``)."""

from torch2ort.export.exporters import EXPORTERS, ExportResult, export_onnx, read_metadata

__all__ = ["EXPORTERS", "ExportResult", "export_onnx", "read_metadata"]
