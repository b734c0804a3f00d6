"""Where onnxruntime keeps its native module; scripts import exceptions from here."""
