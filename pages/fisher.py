"""Fisher importance: which layers, and which neurons, carry the task."""
import streamlit as st

from fwsvd_core.analysis.figures import fisher_overview, importance_profiles, matrix_heatmap
from studio.state import ready

st.title("Fisher importance")
state = ready()
if state is None:
    st.stop()

session, fisher = state.session, state.fisher
st.caption(f"Empirical Fisher of every weight: the squared gradient of the task loss, averaged over "
           f"{fisher.n_examples} training examples ({fisher.estimator} estimator). Large values mark weights whose "
           "change would hurt the task most.")
st.plotly_chart(fisher_overview(session.layers, fisher.mass()), width="stretch", key="overview")

names = [l.name for l in session.layers]
by_mass = sorted(names, key=lambda n: -fisher.mass()[n])
name = st.selectbox("Layer", names, index=names.index(by_mass[0]),
                    format_func=lambda n: f"{n}  (rank {by_mass.index(n) + 1} of {len(names)} by Fisher mass)")
layer = next(l for l in session.layers if l.name == name)
w = session.weight(name)

if fisher.form == "full":
    st.markdown(f"**{layer.role}** of block {layer.block}: {layer.out_features} outputs x {layer.in_features} inputs. "
                "Both maps use the same pooling, so a bright area in one can be compared with the other.")
    c1, c2 = st.columns(2)
    c1.plotly_chart(matrix_heatmap(fisher.per_layer[name], "Fisher (log10)", log=True), width="stretch",
                    key="fisher_map")
    c2.plotly_chart(matrix_heatmap(w.abs(), "|W| (log10)", log=True, colorscale="Cividis"), width="stretch",
                    key="weight_map")
else:
    st.info(f"**{layer.role}** of block {layer.block}: {layer.out_features} outputs x {layer.in_features} inputs. "
            "This model's Fisher is the low-memory form: it keeps each layer's row and column sums only (the "
            "element-wise Fisher would not fit in memory), so this page shows profiles only, no heatmap. FWSVD "
            "needs no more than these sums.")

st.subheader("Importance profiles")
st.caption("The sums FWSVD weights with. Input side: per input feature, the sum over outputs (a column of W in "
           "PyTorch's out x in layout; fwsvd-input, the paper's). Output side: per output feature, the sum over inputs "
           "(a row; fwsvd-output). A few features with much larger sums are where the task lives in this layer.")
inputs, outputs = fisher.col_sums(name), fisher.row_sums(name)
st.plotly_chart(importance_profiles(inputs, outputs), width="stretch", key="profiles")
top = lambda v: ", ".join(str(int(i)) for i in v.argsort(descending=True)[:8])  # noqa: E731
st.markdown(f"Most important input features: {top(inputs)}  \nMost important output features: {top(outputs)}  \n"
            f"Share of Fisher in the top 5% of input features: "
            f"{float(inputs.sort(descending=True).values[: max(1, len(inputs) // 20)].sum() / inputs.sum()):.1%}")
