#!/usr/bin/env python3
"""Checks an ONNX file with the ONNX checker and runs it with onnxruntime (for tests/onnx_export.rs).

usage: run_onnx.py MODEL.onnx INPUT.f32 N,C,H,W OUTPUT.f32

INPUT.f32 holds the input as little-endian float32 values of shape N,C,H,W; the model's output
(`logits`) is written to OUTPUT.f32 the same way, its shape on stdout. Exit status 3 when the
`onnx` or `onnxruntime` package is missing (the test then skips the comparison), 1 on any other
failure.
"""

import sys

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
except ImportError as e:
    print(f"missing Python package: {e}")
    sys.exit(3)


def main():
    model_path, input_path, shape, output_path = sys.argv[1:5]
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    print(f"checker: ok (ir_version {model.ir_version}, opset {model.opset_import[0].version})")
    dims = [int(d) for d in shape.split(",")]
    x = np.fromfile(input_path, dtype="<f4").reshape(dims)
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input": x})
    logits.astype("<f4").tofile(output_path)
    print("logits:", ",".join(str(d) for d in logits.shape))


if __name__ == "__main__":
    main()
