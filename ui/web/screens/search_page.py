"""Search page: an uploaded or indexed image -> its top-k neighbours (FAISS) and the classifier's prediction;
class-aware ranking, near-duplicates collapsed or MMR, and "more like these / less like these" by ticking
results (Qdrant's recommend). Or "Search by words": the images whose automatic tags match the words, ranked by
tag probability, with the Filtered page's filters (ui/services/text_search.py)."""

from __future__ import annotations

import streamlit as st

from imgsearch.db import collection as data
from imgsearch.search.class_aware import DEFAULT_LAMBDA, query_distribution
from imgsearch.search.class_aware import POOL as CLASS_AWARE_POOL
from imgsearch.search.diversity import DEFAULT_MMR_LAMBDA, POOL_FACTOR
from imgsearch.search.payload import FILTER_FIELDS, Filter
from imgsearch.search.service import Ranking, SearchResponse
from imgsearch.ui.services.export import result_rows
from imgsearch.ui.services.text_search import TextSearchError, search_words
from imgsearch.ui.web import export_widgets, paging, resources, views, widgets
from imgsearch.ui.web import query_state as qs

PREFIX = "search"
CLASS_AWARE, COLLAPSE = f"{PREFIX}_class_aware", f"{PREFIX}_collapse"
MMR, MMR_LAMBDA = f"{PREFIX}_mmr", f"{PREFIX}_mmr_lambda"
POSITIVE, NEGATIVE, RECOMMEND = f"{PREFIX}_positive", f"{PREFIX}_negative", f"{PREFIX}_recommend"
# Measured (README, "Class-aware ranking"): Caltech-101, validation images querying the training images.
CLASS_AWARE_HELP = ("Re-rank the 100 nearest neighbours by how likely they share the query's class (the SVM's "
                    "calibrated probabilities): P@10 0.8605 → 0.9531 on Caltech-101, validation images querying "
                    "the training images. Cards show the score that ranks them beside the cosine similarity.")


NO_CLASSIFIER = ("No classifier: the collection has too few labels for one (it needs at least 2 labels with 4 or "
                 "more images each). Search, clusters and the map work without it.")


def query_proba(state: resources.AppState, query: widgets.Query) -> dict[str, float] | None:
    if state.trained is None or not state.trained.has_classifier:
        return None
    return query_distribution(state.trained.query_classifier(), query.vector)


def prediction(state: resources.AppState, proba: dict[str, float] | None) -> None:
    st.subheader("Predicted class")
    if proba is None:
        if state.trained is not None:  # trained, on too few labels for a classifier: training again will not help
            st.info(NO_CLASSIFIER)
        else:
            st.info(f"No trained classifier yet: run `{resources.TRAIN_HINT}` to see predictions.")
        return
    # Display names, as every other class name on the page ("Faces easy", not "Faces_easy").
    top = views.top_classes(list(proba.values()), [views.display_label(c) for c in proba], n=5)
    st.markdown(f"**{top.label.iloc[0]}** ({top.probability.iloc[0]:.1%}, SVM)",
                help="The SVM's most probable class for the query, and its probability.")
    st.plotly_chart(views.probability_figure(top), config={"displayModeBar": False})


def ranking_options(trained: bool, words: bool = False) -> tuple[bool, bool, float | None]:
    """The sidebar's ranking choices: (class-aware, collapse near-duplicates, MMR lambda or None). A search by
    `words` ranks by tag probability: only the near-duplicate choice applies to it."""
    side = st.sidebar
    side.subheader("Ranking")
    class_aware = side.toggle("Class-aware ranking", value=True, key=CLASS_AWARE, disabled=not trained or words,
                              help=CLASS_AWARE_HELP if trained else "Needs trained models.")
    collapse = side.checkbox("One image per near-duplicate group", value=False, key=COLLAPSE,
                             help="Show only the best-ranked image of each near-duplicate group.")
    mmr = side.checkbox("Diversify (MMR)", value=False, key=MMR, disabled=words,
                        help="Maximal marginal relevance: each next result trades similarity to the query against "
                             "similarity to the results above it.")
    lam = side.slider("MMR: weight of similarity", 0.0, 1.0, DEFAULT_MMR_LAMBDA, 0.05, key=MMR_LAMBDA,
                      disabled=not mmr or words, help="1 = the plain ranking; lower = more varied results.")
    return class_aware and trained, collapse, lam if mmr else None


def _ticks(kind: str) -> list[int]:
    return list(st.session_state.setdefault(kind, []))


def _toggle(kind: str, other: str, image_id: int, key: str) -> None:
    """A tick box changed: keep the ticked ids in a plain key, so a tick survives results that change."""
    ticked = [i for i in st.session_state.get(kind, []) if i != image_id]
    if st.session_state[key]:
        ticked.append(image_id)
        st.session_state[other] = [i for i in st.session_state.get(other, []) if i != image_id]
        st.session_state.pop(f"{PREFIX}_{'neg' if other == NEGATIVE else 'pos'}_{image_id}", None)
    st.session_state[kind] = ticked


def tick_boxes(r) -> None:
    """Under a result card: "more like this" and "less like this" ticks, one under the other (side by side, a
    narrow card cut their labels to a letter)."""
    for kind, other, label in ((POSITIVE, NEGATIVE, "more like"), (NEGATIVE, POSITIVE, "less like")):
        key = f"{PREFIX}_{'pos' if kind == POSITIVE else 'neg'}_{r.id}"
        st.checkbox(label, value=r.id in _ticks(kind), key=key, on_change=_toggle, args=(kind, other, r.id, key))


def _start_recommend() -> None:
    # Kept with the query it was started from: a new query goes back to ranked neighbours.
    st.session_state[RECOMMEND] = (_ticks(POSITIVE), _ticks(NEGATIVE), st.session_state.get(qs.Q))


def _clear_ticks() -> None:
    for key in [k for k in st.session_state if str(k).startswith((f"{PREFIX}_pos_", f"{PREFIX}_neg_"))]:
        del st.session_state[key]
    st.session_state[POSITIVE], st.session_state[NEGATIVE] = [], []
    st.session_state.pop(RECOMMEND, None)


RECOMMEND_LEGEND = ("recommend score: Qdrant's, near a positive example (0 to 1) or nearer a negative one (below "
                    "0), not a cosine. predicted: the classifier's (SVM) class, with its probability.")


def adopt_url_examples() -> None:
    """A reload or a shared link of a "more like / less like" search: its examples ticked and searched again,
    from the query the link names."""
    pair = st.session_state.pop(qs.RECOMMEND_FROM_URL, None)
    if pair:
        pos, neg = list(pair[0]), [i for i in pair[1] if i not in pair[0]]
        st.session_state[POSITIVE], st.session_state[NEGATIVE] = pos, neg
        st.session_state[RECOMMEND] = (pos, neg, st.session_state.get(qs.Q))


def tick_bar() -> None:
    """The ticked examples and the button that searches with them."""
    pos, neg = _ticks(POSITIVE), _ticks(NEGATIVE)
    left, mid, right = st.columns([3, 2, 2], vertical_alignment="center")
    left.caption(f"Ticked: {len(pos)} more like, {len(neg)} less like. Tick results below, then search with them "
                 "(images like the first and unlike the second).")
    mid.button(f"Search with {len(pos)} positive / {len(neg)} negative", key=f"{PREFIX}_recommend_go",
               disabled=not pos, on_click=_start_recommend, type="primary", width="stretch")
    right.button("Clear ticks", key=f"{PREFIX}_clear_ticks", on_click=_clear_ticks, disabled=not (pos or neg),
                 width="stretch")


WORDS_HELP = ("Finds images by their automatic tags: the ImageNet classes the backbone's own classifier saw in "
              "each image, with their broader WordNet terms ('dog' finds every breed, 'bird' every bird). Several "
              "words must all match. Ranked by tag probability; the Filtered page's filters apply.")
WORDS_LEGEND = ("tag p: the probability of the words' tags in the image (several words: multiplied). tags: the "
                "image's top automatic tags. predicted: the classifier's (SVM) class, with its probability.")


def session_filter() -> Filter:
    """The Filtered page's filters, kept in the session and the URL (query_state): the words search applies them."""
    conditions = {}
    for f in FILTER_FIELDS:
        value = st.session_state.get(qs.filter_key(f))
        if f.match == "any":
            conditions[f.key] = list(value) if value else None
        else:
            conditions[f.key] = value if value is not None and f.bounds and value > f.bounds[0] else None
    return Filter.on(conditions)


def _use_word(unknown: str, known: str) -> None:
    words = st.session_state[qs.TEXT].split()
    st.session_state[qs.TEXT] = " ".join(known if w.lower() == unknown else w for w in words)


def _clear_words() -> None:
    st.session_state[qs.TEXT] = ""


def words_box() -> str:
    """The "Search by words" box; its words (kept in the session and the URL as `?text=`), "" for none."""
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    text = left.text_input("Search by words", key=qs.TEXT, max_chars=qs.TEXT_MAX, help=WORDS_HELP,
                           placeholder="dog, umbrella, golden retriever, bird on a branch … (Enter to search)")
    right.button("Clear", key=f"{PREFIX}_words_clear", on_click=_clear_words, disabled=not text, width="stretch")
    return " ".join((text or "").split())


def words_results(state: resources.AppState, text: str, window: paging.Window, collapse: bool, flt: Filter) -> None:
    """The images tagged with the words, most probable first, composed with the Filtered page's filters: the
    window's page of them."""
    try:
        with widgets.store_errors():
            response = search_words(state.ctx.Session, state.search_service.faiss, text, window.depth, flt,
                                    collapse, index=resources.tag_index(state.key, state.version))
    except TextSearchError as exc:
        st.warning(exc.message)
        close = [(w, c) for w, words in exc.suggestions.items() for c in words[:4]]
        if close:
            st.caption("Did you mean:")
            for col, (unknown, known) in zip(st.columns(len(close)), close, strict=True):
                col.button(known, key=f"{PREFIX}_word_{unknown}_{known}", on_click=_use_word, args=(unknown, known),
                           width="stretch")
        return
    paging.settle(window, len(response.results))
    n_ranked = len(response.results)
    response.results = response.results[window.start : window.depth]
    st.session_state[f"{PREFIX}_results"] = [(r.id, r.score, r.file_name) for r in response.results]
    st.caption(f"Words: {response.describe()} · search: {response.search_ms:.1f} ms · "
               f"{state.n_indexed:,} images indexed")
    conditions = views.describe_compact(flt)
    if conditions:
        st.markdown("**Filters** (from the Filtered page): " + "; ".join(conditions))
    else:
        st.caption("No filter: those set on the Filtered page apply here too.")
    n = len(response.results)
    top = f"Top {n} images tagged “{text}”" if n != 1 else f"The one image tagged “{text}”"
    st.subheader((top if window.page == 1 else f"Images {window.start + 1:,}–{window.start + n:,} tagged “{text}”")
                 + " (by tag probability" + (", near-duplicates collapsed)" if collapse else ")"))
    if not response.results:
        st.info("No image is tagged with these words" + (" and matches these filters." if conditions else ".")
                + " Tags are made at ingest, and by `imgsearch train` for images ingested before tags existed.")
        return
    st.caption(WORDS_LEGEND)
    # how many images have the tags is not counted: "up to" the depth until the words run out
    paging.pager(window, n_ranked, window.depth, False, PREFIX)
    widgets.result_grid(response.results, PREFIX, tags=response.tags, score="tag p", legend=WORDS_LEGEND)
    paging.pager(window, n_ranked, window.depth, False, PREFIX, bottom=True)
    export_widgets.download_buttons(result_rows(response.results), "words_results", PREFIX)


def order_line(ranking: Ranking) -> str:
    """One line saying what orders the neighbours, in the terms the cards show."""
    if ranking.mmr_lambda is not None:
        line = (f"each next result is the best trade of similarity to the query (weight {ranking.mmr_lambda:g}) "
                "against similarity to the results above it, so the scores shown do not fall steadily")
    elif ranking.query_proba is not None:
        line = (f"score = similarity + {DEFAULT_LAMBDA:g} × the chance that the image and the query share a class "
                f"(the classifier's), highest first, over the {CLASS_AWARE_POOL} nearest; past them, by "
                "similarity. Cards show both")
    else:
        line = "similarity to the query, highest first"
    return line + ("; one image per near-duplicate group." if ranking.collapse else ".")


def main() -> None:
    # The title says which search the page shows: by words while the box has words, else by image.
    title = st.empty()
    title.title("Search by image")
    state = resources.load_state()
    k = widgets.k_slider()
    text = words_box()
    if text:
        title.title("Search by words")
    class_aware, collapse, mmr_lambda = ranking_options(state.trained is not None, words=bool(text))
    if text:
        flt = session_filter()
        window = paging.window(k, paging.MAX_DEPTH, state.n_indexed, (text, k, collapse, str(flt.describe())))
        qs.write_url(with_filters=True, with_text=True, page=window.page)
        st.caption("Clear the words to search by image.")
        words_results(state, text, window, collapse, flt)
        return
    adopt_url_examples()
    query = widgets.query_picker(state, PREFIX)
    recommend = st.session_state.get(RECOMMEND)
    if recommend and recommend[2] != st.session_state.get(qs.Q):
        st.session_state.pop(RECOMMEND)
        recommend = None
    if query is None:
        qs.write_url(recommend=recommend[:2] if recommend else None)
        return
    # MMR picks each result against those above it: from one fixed pool, or the pages would disagree.
    window = paging.window(k, paging.MMR_DEPTH if mmr_lambda is not None else paging.MAX_DEPTH,
                           state.n_indexed - (query.exclude_id is not None),
                           (st.session_state.get(qs.Q), k, class_aware, collapse, mmr_lambda, str(recommend)))
    # a reload or a shared link keeps the view, its page included
    qs.write_url(recommend=recommend[:2] if recommend else None, page=window.page)
    asked = window.limit if mmr_lambda is not None else window.depth
    proba = query_proba(state, query)
    ranking = Ranking(proba if class_aware else None, collapse, mmr_lambda)
    with widgets.store_errors():
        if recommend:
            pos, neg, _ = recommend
            try:
                # one more, for the query itself: the notice says the examples and the query are left out
                found = state.search_service.recommend(
                    pos, neg, (asked * POOL_FACTOR if collapse or mmr_lambda else asked) + 1)
            except KeyError as exc:
                st.warning(f"A ticked image is no longer in the collection ({exc}): clear the ticks.")
                found = SearchResponse([])
            found.results = [r for r in found.results if r.id != query.exclude_id]
            response = state.search_service.diversified(found, asked, Ranking(None, collapse, mmr_lambda))
        else:
            response = state.search_service.ranked(query.vector, asked, ranking, exclude_id=query.exclude_id)
    paging.settle(window, len(response.results))
    n_ranked = len(response.results)
    response.results = response.results[window.start : window.depth]
    st.session_state[f"{PREFIX}_results"] = [(r.id, r.score, r.file_name) for r in response.results]

    left, right = st.columns([1, 2])
    with left:
        widgets.show_query(query)
    with right:
        prediction(state, proba)
    embed = f"{query.embed_ms:.0f} ms" if query.image is not None else "0 ms (stored vector)"
    ranked = " (ranked by Qdrant: this host's FAISS mirror is behind it)" if response.source == "qdrant" else ""
    st.caption(f"Embedding: {embed} · search: {response.search_ms:.1f} ms{ranked} · {state.n_indexed:,} images indexed")
    n = len(response.results)
    if recommend:
        st.subheader(f"{n} images like {len(recommend[0])} ticked and unlike {len(recommend[1])}")
        st.caption("Scores: Qdrant's recommend score (near a positive example: 0 to 1; nearer a negative one: "
                   "below 0), not cosine similarity. The examples and the query itself are left out.")
        st.button("Back to the query's neighbours", key=f"{PREFIX}_recommend_back",
                  on_click=lambda: st.session_state.pop(RECOMMEND, None))
    else:
        first = window.start + 1
        st.subheader(((f"Top {n} neighbours" if n != 1 else "The nearest neighbour") if window.page == 1
                     else f"Neighbours {first:,}–{window.start + n:,}") + f" ({ranking.describe()})")
        st.markdown(f"**Order:** {order_line(ranking)}")
        st.caption(views.RESULT_LEGEND)
    paging.pager(window, n_ranked, asked, not (collapse or recommend), PREFIX)
    tick_bar()
    if not response.results:
        st.info("No neighbours found.")
    with state.ctx.Session() as s:
        tags = data.tags_by_image(s, [r.id for r in response.results])
    widgets.result_grid(response.results, PREFIX, extra=tick_boxes, tags=tags,
                        score="recommend score" if recommend else "similarity",
                        legend=RECOMMEND_LEGEND if recommend else views.RESULT_LEGEND)
    paging.pager(window, n_ranked, asked, not (collapse or recommend), PREFIX, bottom=True)
    export_widgets.download_buttons(result_rows(response.results), "search_results", PREFIX)


main()
