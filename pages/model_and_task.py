"""Model and task: what to compress, on which data, with which Fisher settings."""
import streamlit as st

from fwsvd_core.analysis.sweep import same_split_warning
from fwsvd_core.demo import demo_spec, is_demo
from fwsvd_core.errors import FwsvdError
from fwsvd_core.estimation.fisher import ESTIMATORS
from fwsvd_core.inputs.data import read_table
from fwsvd_core.inputs.families import family_names, get_family, label_mapping
from fwsvd_core.inputs.layers import layer_table
from fwsvd_core.inputs.precision import DTYPE_CHOICES, dtype_name, model_dtype
from fwsvd_core.inputs.tasks import TASKS, get_task
from studio.labels import metric_label
from studio.serving import example_path
from studio.state import (
    DATA_SOURCES,
    WINDOW_LENGTHS,
    data_or_error,
    demo_names,
    dense_score,
    get_choice,
    model_or_error,
    ready,
    save_upload,
    set_choice,
    uploaded,
    uploaded_split,
    window_length,
)
from studio.tables import show_table

st.title("Model and task")
choice = get_choice()

left, right = st.columns(2)
with left:
    st.subheader("Model")
    kinds = ["Built-in demo", "Local directory", "Hugging Face hub id"]
    kind = st.radio("Where the model comes from", kinds, horizontal=True,
                    index=0 if choice.model.startswith("demo:") else 1 if choice.model.startswith(("/", ".", "~")) else 2)
    if kind == "Built-in demo":
        names = demo_names()
        model = st.selectbox("Demo", names, index=names.index(choice.model) if choice.model in names else 0,
                             format_func=lambda name: f"{name} ({demo_spec(name).task})",
                             help="MiniLM-L6 fine-tuned by FWSVD Studio itself; built on first use")
    else:
        placeholder = (example_path("saved-model", "/path/to/saved/model") if kind == "Local directory"
                       else "textattack/bert-base-uncased-SST-2")
        model = st.text_input("Directory" if kind == "Local directory" else "Hub id",
                              value="" if choice.model.startswith("demo:") else choice.model, placeholder=placeholder)
    if model and model != choice.model:
        demo_task = demo_spec(model).task if is_demo(model) and model in demo_names() else None
        choice = set_choice(model=model, **({"task": demo_task} if demo_task else {}))
    dtype = st.selectbox("Weights' dtype", DTYPE_CHOICES, index=DTYPE_CHOICES.index(choice.dtype),
                         help="auto keeps the dtype the checkpoint is stored in (the demos: float32). The Fisher, "
                              "activation statistics and decompositions are computed in float32 either way; "
                              "compressed layers are stored in this dtype.")
    if dtype != choice.dtype:
        choice = set_choice(dtype=dtype)

with right:
    st.subheader("Task and data")
    # every registered task, grouped by family (the families' own order)
    task_names = [t for name in family_names() for t in TASKS if TASKS[t].family == name]
    task = st.selectbox("Task", task_names, index=task_names.index(choice.task),
                        format_func=lambda t: f"{t}  ·  {get_family(TASKS[t].family).name}",
                        help="grouped by family: " + "; ".join(f"{n}: {get_family(n).description}"
                                                                for n in family_names()))
    family = get_family(TASKS[task].family)
    st.caption(f"{family.name}: {family.description}")
    local = f"Local {family.local_data}"
    source = st.radio("Data source", DATA_SOURCES, index=DATA_SOURCES.index(choice.data_source), horizontal=True,
                      format_func=lambda s: local if s == "Local GLUE folder" else s)
    changes = {"task": task, "data_source": source}
    if source == "Local GLUE folder":
        changes["data_dir"] = st.text_input(local, value=choice.data_dir, placeholder="../shared/data/glue")
    elif source == "Uploaded file" and family.read_upload is not None:
        upload = st.file_uploader(f"A {family.local_data.split(' (')[0].replace(' or folder', '')}",
                                  type=["txt", "text", "conll", "iob", "json", "jsonl"])
        if upload is not None:
            changes.update(upload_name=upload.name, upload_digest=save_upload(upload.name, upload.getvalue()))
    elif source == "Uploaded file":
        upload = st.file_uploader("CSV, TSV or JSON with a header", type=["csv", "tsv", "json", "jsonl"])
        if upload is not None:
            digest = save_upload(upload.name, upload.getvalue())
            try:
                name, content = uploaded(digest)
                columns = list(read_table(content, name, skip_bad_rows=choice.skip_bad_rows).columns)
            except FwsvdError as exc:
                st.error(str(exc))
                columns = []
            if columns:
                n_text = len(get_task(task).text_columns)
                texts = [st.selectbox(f"Text column {i + 1}", columns, index=min(i, len(columns) - 1), key=f"text{i}")
                         for i in range(n_text)]
                label = st.selectbox("Label column", columns, index=len(columns) - 1)
                changes.update(upload_name=upload.name, upload_digest=digest, text_columns=tuple(texts), label_column=label)
    elif source == "Synthetic (generated)" and get_task(task).glue_file is not None and task not in ("sst2", "stsb"):
        st.error("The synthetic task exists for sst2 and stsb only.")
    changes["skip_bad_rows"] = st.checkbox(
        "Skip malformed rows", value=choice.skip_bad_rows,
        help="rows with a wrong number of fields or a missing text or label are left out and counted, instead of "
             "stopping with their line numbers")
    choice = set_choice(**changes)

st.subheader("Fisher settings")
c1, c2, c3 = st.columns(3)
unit = choice.family.example_unit
samples = c1.select_slider(f"Training {unit}s for the Fisher", [8, 16, 32, 64, 128, 256, 512, 1024, 2048],
                           value=choice.fisher_samples,
                           help="the calibration set: N windows of L tokens (the LLM papers use 128-256 x 2048)"
                           if unit == "window" else None)
if unit == "window":
    nearest = min(WINDOW_LENGTHS, key=lambda n: abs(n - choice.seq_len))
    length = c1.select_slider("Tokens per window (L)", WINDOW_LENGTHS, value=nearest,
                              help="the text is tokenized once and cut into non-overlapping windows of L tokens; the "
                                   "Fisher reads N of the training windows, perplexity is measured on the dev windows "
                                   "(longer windows: the command line's --max-length)")
    choice = set_choice(seq_len=length)
estimator = c2.radio("Estimator", ESTIMATORS, index=ESTIMATORS.index(choice.estimator), horizontal=True,
                     help="per-sample: the definition (each example's gradient squared); batch: squared mini-batch "
                          "gradients, cheaper and biased low")
subsample = c3.number_input(f"Score on a random subset of the dev split's {unit}s (0 = all)", 0, 100000,
                            choice.eval_subsample, step=100)
choice = set_choice(fisher_samples=samples, estimator=estimator, eval_subsample=int(subsample))

st.divider()
loaded = model_or_error(choice)
if loaded is not None:
    st.markdown(f"**Model:** {loaded.source}, weights in {dtype_name(model_dtype(loaded.model))}")
    for note in loaded.notes:
        (st.warning if note.startswith("SYNTHETIC") else st.caption)(note)
    train, dev = data_or_error(choice, "train", loaded), data_or_error(choice, "dev", loaded)
    if train is not None and dev is not None:
        st.markdown(f"**Data:** {dev.source} — the Fisher uses {min(choice.fisher_samples, len(train))} of "
                    f"{len(train)} training {unit}s; {min(choice.eval_subsample or len(dev), len(dev))} of {len(dev)} "
                    f"{dev.split} {unit}s are scored")
        if unit == "window" and window_length(choice, loaded) < choice.seq_len:
            st.caption(f"Windows of {window_length(choice, loaded)} tokens: the model reads no more.")
        if choice.data_source == "Uploaded file":
            st.caption(f"The uploaded file was {uploaded_split(choice)[2]}: the Fisher reads the train part, the "
                       "dev part is scored.")
        if warning := same_split_warning(train, dev):
            st.warning(warning)
        for note in dict.fromkeys(train.notes + dev.notes):
            st.warning(note)
        try:
            mapping = label_mapping(loaded.model.config, dev.task)  # None: the family's outputs are not labels
            if mapping is not None and mapping.warning:
                st.warning(mapping.warning)
        except FwsvdError as exc:
            st.error(str(exc))
        state = ready()
        if state is not None:
            try:
                score = dense_score(choice, loaded, dev)  # None: cancelled, and said so
            except FwsvdError as exc:
                st.error(str(exc))
                score = None
            if score is not None:
                m1, m2, m3, m4 = st.columns(4)
                m1.metric(f"Dense {metric_label(score.primary_metric)}", f"{score.score:.4f}",
                          help=f"on {score.n_examples} {dev.split} {unit}s. The mismatch page's sweep and ablation "
                               "score a random subset (400 and 300 examples by default) and draw the dense score on "
                               "that same subset beside theirs, so their dense line can differ from this one.")
                m2.metric("Parameters", f"{sum(p.numel() for p in loaded.model.parameters()) / 1e6:.2f} M")
                m3.metric("Compressible layers", len(state.session.layers))
                m4.metric(f"Fisher ({state.fisher.estimator})", f"{state.fisher.n_examples} {unit}s")
                low = " (row and column sums only)" if state.fisher.form == "profiles" else ""
                st.caption(f"{score.describe()}; {score.label_message}. Fisher{low}: {state.fisher.estimator} estimator on "
                           f"{state.fisher.split}, {state.fisher.n_skipped} skipped"
                           f"{' (from cache)' if state.fisher.from_cache else f', {state.fisher.seconds:.1f} s'}.")
            if state.fisher.n_skipped:
                st.warning(f"{state.fisher.n_skipped} of {state.fisher.n_skipped + state.fisher.n_examples} Fisher "
                           "examples were skipped: their loss or gradient is not finite.")
            for note in state.fisher.notes:
                st.warning(f"Fisher: {note}")
            st.subheader("Compressible layers")
            show_table(layer_table(state.session.layers))
