"""FWSVD Studio: Streamlit entry point. Page config, the sidebar summary, navigation."""
import traceback

import streamlit as st

# emoji icons, drawn by the browser itself (a :material/ favicon is fetched from Google's font server); these
# older symbols are in common text fonts too, for a browser without a colour emoji font
st.set_page_config(page_title="FWSVD Studio", page_icon="✂️", layout="wide")

pages = [
    st.Page("pages/model_and_task.py", title="Model and task", icon="⚙️", default=True),
    st.Page("pages/fisher.py", title="Fisher importance", icon="⚖️"),
    st.Page("pages/mismatch.py", title="The SVD mismatch", icon="✂️"),
    st.Page("pages/rank_editor.py", title="Rank editor", icon="✏️"),
]
navigation = st.navigation(pages)
with st.sidebar:  # the app's own frame first: the imports below (torch, transformers) take seconds on a first visit
    st.markdown("### FWSVD Studio")
    st.caption("Fisher-weighted low-rank compression of fine-tuned transformers")
    summary = st.empty()
    summary.caption("Loading the libraries (torch, transformers) ...")
starting = st.empty()
starting.info("Starting FWSVD Studio: loading torch and transformers (a few seconds, once per server start) ...")

from fwsvd_core.errors import FwsvdError  # noqa: E402
from studio.state import get_choice  # noqa: E402

starting.empty()

choice = get_choice()
with summary.container():
    dtype = "" if choice.dtype == "auto" else f" ({choice.dtype})"
    st.markdown(f"**Model** `{choice.model}`{dtype}  \n**Task** {choice.task}  \n**Data** {choice.data_source}  \n"
                f"**Fisher** {choice.fisher_samples} {choice.family.example_unit}s, {choice.estimator}")
    if choice.data_source.startswith("Synthetic"):
        st.warning("Synthetic data: a generated task, not real data.")

try:
    navigation.run()
except Exception as exc:  # the page boundary: a message, never a bare traceback (st.stop and reruns pass through)
    message = str(exc) if isinstance(exc, FwsvdError) else f"Something went wrong: {type(exc).__name__}: {exc}"
    st.error(message)
    with st.expander("Details"):
        st.code("".join(traceback.format_exception(exc)))
