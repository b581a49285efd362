"""Streamlit glue of the dashboard: shared state and cached heavy objects. The computing is fwsvd_core's."""
