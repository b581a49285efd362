"""The SVD mismatch: smaller reconstruction error, yet a lower task score."""
import streamlit as st

from fwsvd_core.analysis.direction import direction_words
from fwsvd_core.analysis.figures import (
    ablation_figure,
    coinciding_spectra,
    mismatch_figure,
    signed_layer_map,
    spectra_figure,
    toy_figure,
)
from fwsvd_core.analysis.noise import ablation_noise_sentence, noise_sentence
from fwsvd_core.analysis.predictor import PREDICTORS, svd_failure_scores, validate_predictor
from fwsvd_core.analysis.toy import IMPORTANCE, IMPORTANT, toy_matrix, toy_solutions
from fwsvd_core.compression.methods import FISHER, KRONECKER, method_names
from fwsvd_core.screens import DEFAULTS, ablation_table, predicted_failures, stored_ablation, sweep_table
from studio.state import (
    default_scored,
    inputs_work,
    prepare_methods,
    ready,
    request,
    requested,
    requested_result,
    sweep_key,
    sweeps_with_stored,
)
from studio.tables import show_table

st.title("The SVD mismatch")
state = ready()
if state is None:
    st.stop()
session, choice = state.session, state.choice
metric = state.dev.task.primary_metric

st.markdown(
    "Plain SVD gives the best rank-r approximation of each weight matrix: no other method has a smaller "
    "reconstruction error ||W - W_r||. Yet the task does not care about every weight equally. FWSVD scales each "
    "feature of one side of the layer by its Fisher importance before the SVD: the input side (each input feature, "
    "a column of W in PyTorch's out x in layout; fwsvd-input, the paper's) or the output side (each output "
    "feature, a row; fwsvd-output). So it spends the rank on the weights the task needs. The result: "
    "**a larger plain error, and a better task score.** Compare the left panel of the sweep below with the middle one."
)

# the factors every section below reads, and that the toy's last lines compare on a real layer; the toy goes on
# while they are computed
factors_ready = prepare_methods(state, DEFAULTS.factor_methods, stop=False)

st.subheader("A toy you can check by hand")


@st.fragment
def toy_example() -> None:
    """A 6 x 5 matrix, a rank slider, both reconstructions; the slider reruns only this part."""
    toy = toy_matrix()
    rank = st.slider("Rank of the toy's reconstruction", 1, min(toy.weight.shape) - 1, 1, key="toy_rank")
    solutions = toy_solutions(toy, rank)
    st.markdown(
        f"Most entries of this matrix are large, and the task loss barely notices them; the {len(IMPORTANT)} boxed "
        f"entries are small, and the loss cares {IMPORTANCE:.0f} times more about each of them (their Fisher). Plain "
        "SVD keeps what is *large*; the Fisher-weighted solution keeps what *matters*."
    )
    st.plotly_chart(toy_figure(toy.weight, IMPORTANT, {"plain SVD": solutions["svd"].reconstruction,
                                                      "Fisher-weighted": solutions["weighted"].reconstruction}),
                    width="stretch", key="toy")
    t1, t2, t3, t4 = st.columns(4)
    svd, weighted = solutions["svd"], solutions["weighted"]
    t1.metric("Plain SVD: plain error", f"{svd.plain_error:.3f}")
    t2.metric("Plain SVD: weighted error", f"{svd.weighted_error:.3f}")
    t3.metric("Weighted: plain error", f"{weighted.plain_error:.3f}",
              f"{weighted.plain_error - svd.plain_error:+.3f} vs SVD", delta_color="inverse")
    t4.metric("Weighted: weighted error", f"{weighted.weighted_error:.3f}",
              f"{weighted.weighted_error - svd.weighted_error:+.3f} vs SVD", delta_color="inverse")
    lost = ", ".join(f"({i}, {j})" for i, j in svd.sacrificed)
    kept = ", ".join(f"({i}, {j})" for i, j in weighted.sacrificed)
    above = [label for label, value in (("plain SVD's weighted error", svd.weighted_error),
                                        ("the weighted solution's plain error", weighted.plain_error)) if value > 1]
    st.caption(f"At rank {rank}, plain SVD gets entries {lost} (row, column) most wrong; the weighted solution gives up "
               f"{kept} instead. Errors are relative: plain ||W - W_r|| / ||W||, weighted the same with every squared "
               "entry multiplied by its Fisher."
               + (f" A relative error above 1 ({' and '.join(above)} here) means the reconstruction is further from W "
                  "than the zero matrix: by that measure, dropping the matrix altogether would do better." if above
                  else ""))
    if not {"svd", "fwsvd-input"} <= session.computed_methods():
        return  # the page computes the factors above; this part reruns with the page once they are in
    # the lesson shows best where the Fisher is most concentrated: the layer with the largest share by default
    mass = state.fisher.mass()
    total = sum(mass.values()) or 1.0
    names = [l.name for l in session.layers]
    name = st.selectbox("Real layer", names, index=names.index(max(names, key=lambda n: mass[n])), key="toy_layer",
                        format_func=lambda n: f"{n}  (Fisher share {mass[n] / total:.3f})",
                        help="the layer holding the largest share of the Fisher is chosen first: there the weighting "
                             "changes the most")
    layer = next(l for l in session.layers if l.name == name)
    real_rank = max(1, round(layer.max_rank * rank / min(toy.weight.shape)))
    real = {m: session.layer_errors(m, layer.name, [real_rank]) for m in ("svd", "fwsvd-input")}
    st.markdown(
        f"**The same two numbers on a real layer** ({layer.name}, {mass[name] / total:.1%} of the model's Fisher, "
        f"rank {real_rank} of {layer.max_rank}, the toy's rank ratio): plain SVD has plain error "
        f"{real['svd']['plain'][0]:.3f} and Fisher-weighted error {real['svd']['fisher'][0]:.3f}; FWSVD has "
        f"{real['fwsvd-input']['plain'][0]:.3f} and {real['fwsvd-input']['fisher'][0]:.3f}. The sweep below shows "
        "what that does to the task score."
    )


toy_example()

if not factors_ready:
    st.stop()

st.subheader("Score against reconstruction error")
c1, c2, c3 = st.columns([2, 2, 1])
methods = c1.multiselect("Methods", method_names(), default=list(DEFAULTS.sweep_methods),
                         help="TFWSVD solves every layer at every ratio: expect a few minutes")
ratios = c2.multiselect("Rank ratios r / min(out, in)", [0.75, 0.5, 0.4, 0.33, 0.25, 0.2, 0.15, 0.1, 0.05],
                        default=list(DEFAULTS.sweep_ratios))
scored = c3.number_input("Examples scored (0 = all)", 0, len(state.dev), default_scored(state.dev, DEFAULTS.sweep_scored),
                         step=100, help="a random subset scores faster; the table then gives a 95% bootstrap interval")
key = sweep_key(choice, methods, ratios, scored)
sweeps = sweeps_with_stored(state, methods, ratios, scored)
if st.button("Run the sweep", type="primary", disabled=not methods or not ratios or key in sweeps):
    request("sweep", key)
if requested("sweep", key) and key not in sweeps:
    prepare = inputs_work(state, methods)

    def sweep_work(progress, cancel, stage):
        prepare(progress, cancel, stage)
        stage(f"scoring {len(methods)} methods at {len(ratios)} rank ratios")
        return sweep_table(session, state.dev, methods, ratios, scored or None, progress=progress, cancel=cancel)

    table = requested_result("sweep", key, "Running the mismatch sweep", sweep_work, "The sweep")
    if table is not None:
        sweeps[key] = table

table = sweeps.get(key)
if table is not None:
    examples = scored or len(state.dev)
    st.plotly_chart(mismatch_figure(table, metric, examples), width="stretch", key="mismatch")
    st.caption(f"Left: task score ({direction_words(metric)}), and the dense model's on the same examples. Middle: plain "
               "relative reconstruction error (SVD is lowest by construction). Right: the error weighted "
               "element-wise by the Fisher, the one that tracks the score. " + noise_sentence(table, metric, examples))
    show_table(table)
elif not requested("sweep", key):
    st.info("Choose methods and ratios, then run the sweep.")

st.subheader("Spectra of one layer")
st.caption("The singular values of W, and of the Fisher-weighted matrices that FWSVD decomposes. A flatter spectrum "
           "needs a larger rank for the same error.")
names = [l.name for l in session.layers]
name = st.selectbox("Layer", names, key="spectrum_layer")
kronecker_methods = method_names(needs=KRONECKER)
if not set(kronecker_methods) <= session.computed_methods():
    slot = st.empty()
    if slot.button("Add the Kronecker-factored spectra (one gradient pass per power iteration over the Fisher's "
                   "examples)"):
        request("kronecker", choice)
    if requested("kronecker", choice) and prepare_methods(state, kronecker_methods, stop=False):
        slot.empty()
kronecker_ready = set(kronecker_methods) <= session.computed_methods()
shown = ("svd", *method_names(needs=FISHER, per_rank=False), *(kronecker_methods if kronecker_ready else ()))
spectra = {m: session.factors(m)[name].spectrum for m in shown}
st.plotly_chart(spectra_figure(spectra), width="stretch", key="spectra")
if same := coinciding_spectra(spectra):
    st.caption("On this layer " + "; ".join(f"**{b}** coincides with **{a}** (drawn dashed over it)" for a, b in same)
               + ": their scaled matrices differ by almost a constant factor (the Fisher that one of them adds is "
                 "about the same for every feature of that side of this layer), and dividing each spectrum by its "
                 "largest value removes a constant factor.")
if kronecker_ready:
    st.markdown(
        "**kfac** and **gfwsvd** decompose L_B^T W L_A. The layer's Fisher, how much the loss cares about every pair "
        "of weights together, is approximated as A (x) B: A says which directions of the layer's *input* carry "
        "signal, B which directions of its *output* the loss is sensitive to, and L_A, L_B are their Cholesky "
        "factors. Cutting the small singular values of L_B^T W L_A then costs the least loss under that "
        "approximation, and each discarded s_i^2 is, to second order, twice the loss it costs."
    )

st.subheader("Which singular values matter?")
st.markdown(
    "The FWSVD paper's teaching figure: split each layer's singular values into ten groups, largest first, remove "
    "one group from every layer at a time, and measure the score drop. If only size mattered, the drop would "
    "shrink steadily from group 1 to group 10; in fine-tuned models small singular values can matter too."
)
a1, a2 = st.columns(2)
decompositions = ("svd", *method_names(needs=FISHER, per_rank=False))
ablation_method = a1.selectbox("Decomposition", decompositions, index=decompositions.index(DEFAULTS.ablation_method),
                               key="ablation_method")
ablation_scored = a2.number_input("Examples scored (0 = all)", 0, len(state.dev),
                                  default_scored(state.dev, DEFAULTS.ablation_scored), step=100, key="ablation_scored")
akey = ("ablation", choice, ablation_method, ablation_scored)
ablations = st.session_state.setdefault("ablations", {})
if akey not in ablations and (stored := stored_ablation(session, state.dev, ablation_method,
                                                        ablation_scored or None)) is not None:
    ablations[akey] = stored
if st.button("Run the ablation (11 evaluations)", disabled=akey in ablations):
    request("ablation", akey)
if requested("ablation", akey) and akey not in ablations:
    result = requested_result(
        "ablation", akey, f"Ablating singular-value groups of {ablation_method}",
        lambda progress, cancel, stage: ablation_table(session, state.dev, ablation_method, ablation_scored or None,
                                                       progress=progress, cancel=cancel),
        "The ablation")
    if result is not None:
        ablations[akey] = result
if akey in ablations:
    st.plotly_chart(ablation_figure(ablations[akey]), width="stretch", key="ablation")
    st.caption(ablation_noise_sentence(ablations[akey]))
    show_table(ablations[akey])

st.subheader("Where does weighting matter?")
st.markdown(
    "A prediction from the weights and the Fisher alone, with no compressed model evaluated: expanding the task loss "
    "to second order, with the Fisher as its curvature, truncating a layer by dW raises the loss by about "
    "g.dW + 0.5 dW^T F dW. The map shows that estimate for plain SVD minus the same for FWSVD at one rank ratio: "
    "the loss weighting is predicted to save, layer by layer. **diagonal** uses the stored Fisher (instant); "
    "**full** adds the first-order term and the off-diagonal curvature from one more gradient pass over training "
    "examples; **kfac** and **nearest** take the curvature as A (x) B, the Kronecker factors of the layer's Fisher "
    "(K-FAC's, and the Kronecker product nearest to the Fisher), once the Kronecker-factored spectra above are "
    "added. Validation tells how far to trust each."
)
# K-FAC and nearest read the Kronecker factors: offered once they are computed (the spectra's button above)
offered = [name for name in PREDICTORS if name in ("diagonal", "full") or session.kronecker is not None]
p1, p2, p3 = st.columns(3)
predict_ratio = p1.select_slider("Rank ratio of the prediction", [0.05, 0.1, 0.15, 0.25, 0.33, 0.5],
                                 value=DEFAULTS.predict_ratio)
predictor = p2.radio("Predictor", offered, horizontal=True, key="predictor_kind",
                     help=None if session.kronecker is not None else "kfac and nearest appear once the "
                     "Kronecker-factored spectra are added above")
calibration = state.train if predictor == "full" else None
pkey = ("predicted", choice, predict_ratio, predictor)
if pkey not in st.session_state and calibration is None:
    st.session_state[pkey] = predicted_failures(session, predict_ratio)  # the demo build stored the default one
elif pkey not in st.session_state:
    with st.spinner("Per-example gradients of the training examples ..."):
        st.session_state[pkey] = svd_failure_scores(session, predict_ratio, calibration=calibration,
                                                    n_examples=choice.fisher_samples)
predicted = st.session_state[pkey]
column = PREDICTORS[predictor]
st.plotly_chart(signed_layer_map(session.layers, dict(zip(predicted["layer"], predicted[column], strict=True)),
                                 title=f"Predicted loss saved by Fisher weighting, per layer ({predictor}; "
                                       "blue: FWSVD predicted worse)"),
                width="stretch", key="predictor")
vscored = p3.number_input("Examples scored when validating (0 = all)", 0, len(state.dev), min(len(state.dev), 300),
                          step=100, key="validate_scored")
vkey = ("validate", choice, predict_ratio, vscored)
if st.button(f"Validate the {len(offered)} predictors ({', '.join(offered)}) against measured single-layer drops "
             f"({2 * len(session.layers)} evaluations)"):
    bar = st.progress(0.0, text="layer by layer ...")
    st.session_state[vkey] = validate_predictor(session, state.dev, predict_ratio, calibration=state.train,
                                                n_examples=choice.fisher_samples, subsample=vscored or None,
                                                progress=lambda d, t: bar.progress(d / t, text=f"layer {d} of {t}"))
    bar.empty()
if vkey in st.session_state:
    table, stats = st.session_state[vkey]
    st.markdown(
        "Spearman rank correlation of each prediction with the measured extra loss of SVD over FWSVD (each layer "
        f"compressed alone, {stats.examples_scored} dev examples; 95% bootstrap interval over examples):\n\n"
        + "\n".join(f"- **{name}**: {a.with_loss:.2f} ({a.low:.2f} to {a.high:.2f}); with the score gain of "
                     f"FWSVD {a.with_score:.2f}" for name, a in stats.agreement.items())
        + f"\n\nThe measurement itself reproduces with a split-half reliability of "
        f"**{stats.reliability:.2f}**: no predictor can correlate with it much above the square "
        "root of that."
    )
    show_table(table)
