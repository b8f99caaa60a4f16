"""Tiny network configurations (constructor keyword arguments), owned here and shared by the checkpoint
tests (``conftest.py``, ``test_precond.py``) and the hostile corpus (``tests/hostile/make_corpus.py``), which
load this file by path (importlib test mode cannot import a test directory as a package).

Every value is the smallest that still exercises the architecture: two resolutions, one block each,
attention at 4x4 on 8x8 images."""

from __future__ import annotations

SONG_SMALL = dict(
    model_type="SongUNet",
    model_channels=16,
    channel_mult=[1, 2],
    num_blocks=1,
    attn_resolutions=[4],
    dropout=0.0,
)
DDPMPP = dict(  # EDM's DDPM++ variant of SongUNet
    SONG_SMALL,
    embedding_type="positional",
    encoder_type="standard",
    decoder_type="standard",
    channel_mult_noise=1,
    resample_filter=[1, 1],
)
NCSNPP = dict(  # EDM's NCSN++ variant of SongUNet
    SONG_SMALL,
    embedding_type="fourier",
    encoder_type="residual",
    decoder_type="standard",
    channel_mult_noise=2,
    resample_filter=[1, 3, 3, 1],
)
ADM_SMALL = dict(SONG_SMALL, model_type="DhariwalUNet")

