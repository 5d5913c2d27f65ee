"""Metrics page: runs over time, training metrics across runs, a run's confusion matrix and per-class table."""

from __future__ import annotations

import streamlit as st

from imgsearch.db import repository as repo
from imgsearch.models import metric_registry as registry
from imgsearch.ui.web import resources, views

PREFIX = "metrics"
MODELS = {g.name: g for g in registry.CLASSIFIERS}


def history_section(state: resources.AppState, train_runs) -> None:
    with state.ctx.Session() as s:
        metrics = {r.id: repo.run_metrics(s, r.id) for r in train_runs}
    history = views.metric_history(train_runs, metrics)
    st.subheader("Across training runs")
    cols = st.columns(2)
    for n, (title, names) in enumerate(views.HISTORY_CHARTS.items()):
        fig = views.history_figure(history, names)
        with cols[n % 2]:
            st.markdown(f"**{title}**")
            if fig is None:
                st.caption("not recorded yet")
            else:
                st.plotly_chart(fig, key=f"{PREFIX}_history_{n}")


def run_section(state: resources.AppState, train_runs) -> None:
    st.subheader("One training run")
    by_id = {r.id: r for r in train_runs}
    run_id = st.selectbox("Run", list(by_id), key=f"{PREFIX}_run",
                          format_func=lambda i: f"{i} · {by_id[i].started_at:%Y-%m-%d %H:%M} · {by_id[i].backbone}")
    group = MODELS[st.radio("Classifier", list(MODELS), horizontal=True, key=f"{PREFIX}_model")]
    with state.ctx.Session() as s:
        metrics = repo.run_metrics(s, run_id)
        confusion = repo.run_artifact(s, run_id, f"confusion.{group.key}")
        table = views.class_table(repo.run_class_metrics(s, run_id, group.key))
    shown = [m for m in registry.of_group(group) if m.summary]
    for col, m in zip(st.columns(len(shown)), shown, strict=True):
        col.metric(m.label, m.format(metrics.get(m.name)), help=m.title)
    if confusion:
        confusion_section(state, confusion)
    else:
        st.caption("Confusion matrix: not recorded for this run")
    st.markdown("**Per class, worst F1 first**")
    st.dataframe(table, hide_index=True, width="stretch", height=min(600, 38 + 35 * len(table)),
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                for c in ("precision", "recall", "f1")})


def confusion_section(state: resources.AppState, confusion: dict) -> None:
    labels, matrix = confusion["labels"], confusion["matrix"]
    st.markdown("**Most-confused pairs (validation)**")
    pairs = views.confused_pairs(labels, matrix)
    if pairs.empty:
        st.caption("No validation image was misclassified.")
    else:
        examples = resources.label_examples(state.key, state.version)
        pairs = pairs.assign(**{
            "true example": [resources.thumbnail_uri(examples.get(x)) for x in pairs["true (raw)"]],
            "predicted example": [resources.thumbnail_uri(examples.get(x)) for x in pairs["predicted (raw)"]],
        })
        st.dataframe(pairs, hide_index=True, width="stretch", column_config={
            "share of the true class": st.column_config.ProgressColumn(format="percent", min_value=0.0,
                                                                       max_value=1.0),
            "true example": st.column_config.ImageColumn(), "predicted example": st.column_config.ImageColumn(),
        }, column_order=["true example", "true", "predicted example", "predicted as", "images",
                         "share of the true class"])
    with st.expander(f"Confusion matrix ({len(labels)} classes)"):
        normalise = st.toggle("Row-normalised, log colour", value=len(labels) > 20, key=f"{PREFIX}_normalise")
        st.plotly_chart(views.confusion_figure(labels, matrix, normalise=normalise), key=f"{PREFIX}_confusion")


def ingest_section(state: resources.AppState) -> None:
    with state.ctx.Session() as s:
        runs = repo.list_runs(s, kind="ingest", limit=200)
    st.subheader("Ingest runs")
    if not runs:
        st.caption(f"none yet: `{resources.INGEST_HINT}`")
        return
    st.dataframe(views.runs_frame(runs)[["id", "outcome", "started_at", "dataset_path", "n_images", "n_skipped",
                                        "n_failed", "n_duplicates", "message"]], hide_index=True)
    with_skips = [r for r in runs if r.n_skipped or r.n_duplicates or r.n_failed]
    if with_skips:
        run_id = st.selectbox("Files a run skipped", [r.id for r in with_skips], key=f"{PREFIX}_ingest_run")
        with state.ctx.Session() as s:
            skipped = views.skipped_frame(repo.skipped_files(s, run_id))
        st.dataframe(skipped, hide_index=True)


def main() -> None:
    st.title("Metrics")
    state = resources.load_state(require_images=False, load_models=False)
    with state.ctx.Session() as s:
        runs = repo.list_runs(s, limit=500)
    if not runs:
        st.info(f"No runs yet. Ingest images with `{resources.INGEST_HINT}` and fit the models with "
                f"`{resources.TRAIN_HINT}`.")
        return
    st.subheader("Runs")
    st.dataframe(views.runs_frame(runs), hide_index=True)
    train_runs = sorted((r for r in runs if r.kind == "train" and r.outcome == "ok"), key=lambda r: r.id)
    if train_runs:
        history_section(state, train_runs)
        run_section(state, list(reversed(train_runs)))
    else:
        st.info(f"No finished training run yet: run `{resources.TRAIN_HINT}`.")
    ingest_section(state)


main()
