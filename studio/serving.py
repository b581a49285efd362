"""The dashboard's side of serving: whether it is served to others (from the address Streamlit listens on), the
paths a visitor may use then, and which browser session a job belongs to."""
from __future__ import annotations

import uuid
from pathlib import Path

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from fwsvd_core.access import allowed_roots, check_model_source, readable_path, served_to_others, writable_path

# a job owner (this module's id of a browser session) -> Streamlit's id of that session, for the sessions a server
# runs (a test's session is no server session: its owner is taken to be present)
_runtime_ids: dict[str, str] = {}


def served() -> bool:
    """Whether others can reach this dashboard: it listens on a non-loopback address, or FWSVD_SERVE=1."""
    return served_to_others(st.get_option("server.address"))


def allowed_model(source: str) -> None:
    """Refuse a model source outside the allowed folders when served (OutsideAllowedFolders); else nothing."""
    if served():
        check_model_source(source)


def readable(path: str) -> Path:
    """The path to read, refused outside the allowed folders when served; checked before anything looks at it."""
    return readable_path(path) if served() else Path(path).expanduser()


def writable(path: str) -> Path:
    """The folder to write to, refused outside the allowed folders when served."""
    return writable_path(path) if served() else Path(path).expanduser()


def example_path(name: str, default: str) -> str:
    """A placeholder for a path field: `default`, or when served a path under the first allowed folder."""
    return str(allowed_roots()[0] / name) if served() else default


def session_owner() -> str:
    """This browser session's id as the owner of the jobs it asks for."""
    owner = st.session_state.setdefault("job owner", uuid.uuid4().hex)
    ctx = get_script_run_ctx()
    if ctx is not None and Runtime.exists() and Runtime.instance().is_active_session(ctx.session_id):
        _runtime_ids[owner] = ctx.session_id
    return owner


def session_present(owner: str) -> bool:
    """Whether the browser session `owner` is still connected (a tab closed is not; one not known is taken to be)."""
    runtime_id = _runtime_ids.get(owner)
    if runtime_id is None or not Runtime.exists():
        return True
    if Runtime.instance().is_active_session(runtime_id):
        return True
    _runtime_ids.pop(owner, None)
    return False
