"""What the rank editor shows beside the score, as the task's family declares it (`Family.sample_view`): a prompt
continued by the dense and the compressed language model, or a sentence's entities as each tagger marks them."""
from __future__ import annotations

import html
from collections.abc import Callable

import pandas as pd
import streamlit as st

from fwsvd_core.analysis.continuations import MAX_NEW_TOKENS, continuations
from fwsvd_core.analysis.entities import entity_spans, word_tags
from fwsvd_core.compression.ranks import RankMap
from studio.state import Ready, request, requested, requested_result

DEFAULT_PROMPT = "The film is a"
DEFAULT_SENTENCE = "Angela Merkel met the chief of Siemens in Munich on Tuesday ."
# one colour per entity type, in the order the task's tags name them
COLOURS = ("#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#d62728", "#8c564b", "#e377c2", "#7f7f7f")


def continuation_view(state: Ready, method: str, ranks: RankMap) -> None:
    """A prompt box and the greedy continuations of the dense and the compressed model, side by side."""
    st.subheader("What compression does to the text")
    prompt = st.text_input("Prompt", DEFAULT_PROMPT, key="sample_prompt",
                           help=f"both models continue it by their most likely next token, {MAX_NEW_TOKENS} tokens at "
                                "most (greedy: the same text every time)")
    key = (state.choice, state.fisher.key, method, tuple(sorted(ranks.items())), prompt)
    if st.button("Continue the prompt with both models", disabled=not prompt.strip()):
        request("continuation", key)
    if not requested("continuation", key):
        last = st.session_state.get("last continuation")
        if last is None:
            st.caption("The dense model and the model compressed at the ranks above each continue the prompt.")
            return
        st.caption("At the ranks of an earlier request: ask again for the ranks above.")
        key = last
    result = requested_result(
        "continuation", key, f"Continuing the prompt with the dense and the {method} model",
        lambda progress, cancel, stage: continuations(
            state.loaded.model, state.session.compress(method, dict(key[3])), state.loaded.tokenizer, state.dev.task,
            key[4], progress=progress, cancel=cancel), "Continuing the prompt")
    if result is None:
        return
    st.session_state["last continuation"] = key
    dense, compressed = st.columns(2)
    for column, title, text in ((dense, "Dense model", result.dense), (compressed, f"Compressed ({key[2]})",
                                                                          result.compressed)):
        column.markdown(f"**{title}**")
        column.text(f"{result.prompt} … {text}" if text else f"{result.prompt} … (the end-of-text token at once)")


def entity_markup(tagged: list[tuple[str, str]], kinds: list[str]) -> str:
    """The sentence as HTML, each entity on its type's colour with the type after it (every word escaped)."""
    parts = []
    for span in entity_spans(tagged):
        text = html.escape(span.text)
        if span.kind is None:
            parts.append(text)
            continue
        colour = COLOURS[kinds.index(span.kind) % len(COLOURS)] if span.kind in kinds else COLOURS[-1]
        parts.append(f'<span style="background:{colour}33;border:1px solid {colour};border-radius:4px;padding:1px 4px">'
                     f'{text} <b style="color:{colour};font-size:0.75em">{html.escape(span.kind)}</b></span>')
    return " ".join(parts)


def entities_view(state: Ready, method: str, ranks: RankMap) -> None:
    """An editable sentence with its entities as the dense and the compressed model mark them."""
    st.subheader("What compression does to the entities")
    sentence = st.text_input("Sentence", DEFAULT_SENTENCE, key="sample_sentence",
                             help="words separated by spaces; each word gets the tag of its first piece")
    words = sentence.split()
    if not words:
        st.caption("Type a sentence: the dense and the compressed model each mark its entities.")
        return
    task = state.dev.task
    kinds = list(dict.fromkeys(t.split("-", 1)[-1] for t in task.label_names if t != "O"))
    compressed = state.session.compress(method, ranks)  # slices of cached factors: milliseconds
    tags = {name: word_tags(model, state.loaded.tokenizer, task, words)
            for name, model in (("dense", state.loaded.model), (f"compressed ({method})", compressed))}
    for name, tagged in tags.items():
        st.markdown(f"**{name.capitalize()}:** {entity_markup(tagged, kinds)}", unsafe_allow_html=True)
    dense, other = tags.values()
    table = pd.DataFrame({"word": words, "dense": [t for _, t in dense], f"compressed ({method})": [t for _, t in other]})
    differ = int((table["dense"] != table[f"compressed ({method})"]).sum())
    st.caption(f"{differ} of {len(words)} words tagged differently by the compressed model.")
    st.dataframe(table, hide_index=True)


SAMPLE_VIEWS: dict[str, Callable[[Ready, str, RankMap], None]] = {
    "continuation": continuation_view,
    "entities": entities_view,
}


def show_sample(state: Ready, method: str, ranks: RankMap) -> None:
    """The view of a sample the task's family declares, if any."""
    view = SAMPLE_VIEWS.get(state.choice.family.sample_view)
    if view is not None:
        view(state, method, ranks)
