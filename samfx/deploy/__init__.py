"""Using a trained model outside training: ``samfx predict`` (and its first-mask mode), ONNX export
and the onnxruntime engine, and ``samfx convert`` into other projects' weight layouts."""
