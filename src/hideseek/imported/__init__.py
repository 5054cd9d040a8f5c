"""Audit a model you already have: import a classifier trained elsewhere (torchvision or timm
state_dict, torchxrayvision, ONNX, or this workflow's own model.pt) and run the protocol on it
without retraining.

- :mod:`.spec` — the ``imported_models`` config entries, checked at parse time (standard library
  only: the scheduler imports it through :func:`hideseek.plan.check_config`);
- :mod:`.loaders` — one loader per format, each returning a torch module or an onnxruntime session;
- :mod:`.preprocess` — the model's own geometry and intensity scaling, applied identically to the
  image and its lung mask;
- :mod:`.predict` — per-image predictions on every representation's test split, in the prediction
  CSV format of :mod:`hideseek.classification.prediction`;
- :mod:`.tables` — the hide-at-test-time tables and the prediction distribution;
- :mod:`.explain` — Grad-CAM, lung attention and the randomisation test where the model is
  differentiable in torch (ONNX through onnx2torch, checked against onnxruntime first);
- :mod:`.verdict` — the imported model's row of ``results/audit/verdict.csv``;
- :mod:`.export` — this workflow's models exported to ONNX.

This ``__init__`` imports nothing, so ``hideseek.imported.spec`` stays standard-library only.
"""
