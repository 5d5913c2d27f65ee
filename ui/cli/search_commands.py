"""`imgsearch search` (with one option per filterable payload field) and `imgsearch metrics`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgsearch.search.condition_params import CONDITION_PARAMS, conditions_from_params
from imgsearch.search.payload import FILTER_FIELDS, Filter
from imgsearch.ui.cli.common import DataDirOpt, console, fail, load_settings, open_context, open_stores, search_query


def with_filter_options(command):
    """One option per filterable payload field (imgsearch.search.payload.FILTER_FIELDS), and the date range's and
    the place's (CONDITION_PARAMS: --taken-after, --near, ...), in place of `command`'s `flt` parameter, which
    receives them gathered into one Filter.

    typer builds a command's options from `inspect.signature`, so the wrapper carries a generated signature:
    the command's own parameters with the schema's options where `flt` was. A new filterable field in the
    schema thus gets its `--flag` here with no edit to this file.
    """
    import functools
    import inspect

    def option(f):
        if f.match == "min":
            low, high = f.bounds or (None, None)
            info = typer.Option(f"--{f.flag}", min=low, max=high, help=f"Only images whose {f.noun} is at least this.")
            return Annotated[f.python_type | None, info]
        info = typer.Option(f"--{f.flag}", help=f"Only this {f.noun} (repeatable).")
        return Annotated[list[f.python_type] | None, info]

    def photo_option(p):  # the date range and the place (search.payload.CONDITION_PARAMS)
        if p.kind == "date":
            from datetime import datetime

            return Annotated[datetime | None, typer.Option(f"--{p.flag}", formats=["%Y-%m-%d"], help=p.help)]
        if p.kind == "bool":
            return Annotated[bool | None, typer.Option(f"--{p.flag}/--no-{p.flag.removeprefix('has-')}",
                                                       help=p.help, show_default=False)]
        if p.kind == "km":
            return Annotated[float | None, typer.Option(f"--{p.flag}", min=0.0, help=p.help)]
        return Annotated[str | None, typer.Option(f"--{p.flag}", metavar="LAT,LON[,RADIUSkm]", help=p.help)]

    def parsed(f, value):
        if value is None or f.parse is None:
            return value
        return [f.parse(v) for v in value] if f.match == "any" else f.parse(value)

    signature = inspect.signature(command, eval_str=True)
    params = []
    for p in signature.parameters.values():
        if p.name != "flt":
            params.append(p)
            continue
        params += [inspect.Parameter(f.name, p.kind, default=None, annotation=option(f)) for f in FILTER_FIELDS]
        params += [inspect.Parameter(c.name, p.kind, default=None, annotation=photo_option(c))
                   for c in CONDITION_PARAMS]

    @functools.wraps(command)
    def wrapper(**kwargs):
        photo = {c.name: kwargs.pop(c.name) for c in CONDITION_PARAMS}
        try:
            flt = Filter(**{f.name: parsed(f, kwargs.pop(f.name)) for f in FILTER_FIELDS},
                         **conditions_from_params(photo))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        return command(flt=flt, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}  # already evaluated, for get_type_hints
    return wrapper


@with_filter_options
def search_cmd(
    image: Annotated[Path | None, typer.Argument(help="Query image file (or --text).")] = None,
    text: Annotated[str | None, typer.Option("--text", help=(
        "Search by words instead of by image: images whose automatic tags (ImageNet classes and their broader "
        "WordNet terms: 'dog' finds every breed) match every word, most probable first."))] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000)] = 10,
    flt: Filter | None = None,  # the schema's filter options: --label, --predicted, --min-confidence, ...
    class_aware: Annotated[bool, typer.Option("--class-aware/--plain", help=(
        "Re-rank the nearest neighbours by agreement of the classifier's predictions with the query's (when "
        "models are trained; measured in the README), or rank by cosine similarity alone."))] = True,
    collapse: Annotated[bool, typer.Option("--collapse-duplicates", help=(
        "Show one image per near-duplicate group (the best ranked)."))] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Most similar images: FAISS ranking, or a Qdrant filtered search when any filter is given; or with --text,
    the images tagged with those words."""
    from imgsearch.models.persistence import ModelLoadError
    from imgsearch.models.query_head import top_k
    from imgsearch.search.service import Ranking
    from imgsearch.ui.services.report import results_table

    if (image is None) == (text is None):
        fail("give a query image or --text WORDS (one of the two)")
    if text is not None:
        with open_context("search", data_dir=data_dir) as ctx:
            return search_text(ctx, text, k, flt, collapse)
    assert image is not None  # one of the two, and not the text
    with open_context("search", data_dir=data_dir) as ctx:  # closes the stores on every exit, fail included
        service, query = search_query(ctx, image)
        xq = query.vector
        try:
            # Lazily: a search reads the SVM (the small file) and never the random forest (the largest by far).
            # The SVM's numpy head when the run wrote one (models/query_head.py): no skops or scikit-learn import.
            trained = ctx.trained(lazy=True)
            svm = trained.query_classifier() if trained is not None and trained.has_classifier else None
        except ModelLoadError as exc:  # the neighbours do not need the models: say so and go on
            trained, svm = None, None
            console.print(f"[yellow]warning:[/] {exc}. The predicted labels below are the stored ones, from models "
                          "that are gone; `imgsearch doctor` checks them.", highlight=False)
        filtered = flt is not None and not flt.is_empty()
        proba = None
        if class_aware and svm is not None and not filtered:
            from imgsearch.search.class_aware import query_distribution

            proba = query_distribution(svm, xq)
        response = service.ranked(xq, k, Ranking(proba, collapse), exclude_id=query.own_id, flt=flt)
        how = ("Qdrant filtered search" if filtered
               else "FAISS neighbours, class-aware" if proba is not None else "FAISS neighbours")
        if response.source == "qdrant":  # a Qdrant server, and this host's mirror is behind it
            how = how.replace("FAISS", "Qdrant") + " (the FAISS mirror is stale: `imgsearch mirror sync`)"
        if svm is not None:
            top = top_k(svm.predict_proba(xq[None, :]), svm.classes_, k=5)[0]
            console.print("predicted class: " + ", ".join(f"{lab} {p:.2f}" for lab, p in top))
        if collapse:
            how += ", near-duplicates collapsed"
        if not response.results:
            console.print("no image matches these filters")
        else:
            title = f"{how} for {image.name} (search {response.search_ms:.1f} ms)"
            console.print(results_table(title, response.results))


def search_text(ctx, text: str, k: int, flt: Filter | None, collapse: bool) -> None:
    """`search --text`: ui/services/text_search.py ranks the catalogue's tags and filters on this backbone's
    payloads; this prints."""
    from imgsearch.ui.services.report import results_table
    from imgsearch.ui.services.text_search import TextSearchError, parse_words, search_words

    try:
        query = parse_words(text)  # names the close known words of an unknown one
    except TextSearchError as exc:
        fail(exc.message)
    stores = open_stores(ctx)
    ctx.require_intact()
    response = search_words(ctx.Session, stores.faiss, query, k, flt, collapse)
    console.print(f"words: {query.describe()}", highlight=False)
    if not response.results:
        console.print("no image is tagged with these words" + (" and matches these filters" if response.filtered
                                                                else ""))
        return
    title = f"images tagged {text!r}, by tag probability ({response.search_ms:.1f} ms)"
    console.print(results_table(title, response.results, score="tag p", tags=response.tags))


def metrics_cmd(
    limit: Annotated[int, typer.Option("--limit")] = 20,
    data_dir: DataDirOpt = None,
) -> None:
    """Print the recorded runs with their headline metrics."""
    from imgsearch.db import repository as repo
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.report import runs_table

    settings = load_settings(data_dir=data_dir)
    Session = open_database(settings, read_only_ok=True)
    with Session() as s:
        runs = repo.list_runs(s, limit=limit)
        metrics = {r.id: repo.run_metrics(s, r.id) for r in runs}
    if not runs:
        console.print("no runs recorded yet: run `imgsearch train` first")
        return
    console.print(runs_table(f"Runs in {settings.db_display}", runs, metrics))


def register(app: typer.Typer) -> None:
    app.command("search")(search_cmd)
    app.command("metrics")(metrics_cmd)
