"""Text: the word tokenizer and text encoders shared by every paired objective (CLAP, ConVIRT, SigLIP)."""
from modalities.text import encoders, tokenizer  # noqa: F401  (registers)
from modalities.text.encoders import build_text_encoder  # noqa: F401
from modalities.text.tokenizer import Tokenizer  # noqa: F401
