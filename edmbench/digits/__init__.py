"""The embedded default: small EDM models, a feature network and an exact Gaussian mixture for 8x8 digits.

Everything is trained on scikit-learn's bundled handwritten digits (no download) and ships in
``pretrained/digits-*``; see docs/embedded.md. Submodules import lazily (torch-fidelity, scikit-learn).
"""
