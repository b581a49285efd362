"""Tables as the pages draw them: no column header cut off."""
from __future__ import annotations

import pandas as pd
import streamlit as st

# a header longer than this many characters is cut ("fisher erro…") in a column sized to its numbers
NARROW_HEADER = 8


def header_widths(frame: pd.DataFrame) -> dict:
    """`column_config` that widens every column whose header would not fit a column sized to its values."""
    return {c: st.column_config.Column(str(c), width="medium" if len(str(c)) <= 20 else "large")
            for c in frame.columns if len(str(c)) > NARROW_HEADER}


def show_table(frame: pd.DataFrame, **kwargs) -> None:
    """`st.dataframe` without index, across the page, every header whole."""
    st.dataframe(frame, hide_index=True, width="stretch", column_config=header_widths(frame), **kwargs)
