"""Our own ChatGLM-6B (GLM v1) implementation on transformers (no remote code).

``load_model(path)`` (``loading.py``) loads THUDM folders; ``prefix.py`` holds P-Tuning v2;
``masks.packed_inputs`` builds packed rows.
"""
