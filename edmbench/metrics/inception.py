"""The Inception extractor's name and weights file (torch-free, so CLI help and spec checks stay light)."""

INCEPTION = "inception-v3-compat"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
WEIGHTS_ENV = "EDMBENCH_INCEPTION_WEIGHTS"
