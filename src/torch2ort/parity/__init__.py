"""Is the ONNX model the torch model? metrics (one definition of each), run-then-compare, gates, verify."""
