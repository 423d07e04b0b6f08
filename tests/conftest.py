"""Test-wide settings: the test suite never reaches the network.

``HF_HUB_OFFLINE`` is read by huggingface_hub when it is first imported, so it is set here,
before any test module imports it. Hub loading is tested through caches laid out on disk.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
