"""fwsvd_core: Fisher-weighted low-rank compression of fine-tuned transformers (no Streamlit here)."""

__version__ = "0.1.0"
