"""Result cards' captions: the HTML under each thumbnail of a grid (ui/web/widgets.py)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from imgsearch.search.service import SearchResult
from imgsearch.ui.web.views import display_label, fmt_prob, tags_text


def _label_html(label: str | None) -> str:
    """A display label with the raw one (the folder name) as its tooltip."""
    if label is None:
        return "–"
    return f'<span title="raw label: {html.escape(label)}">{html.escape(display_label(label))}</span>'


# One line each, cut with an ellipsis (the whole text is the tooltip): every card of a grid row has the same height.
_LINE = '<div style="white-space:nowrap;overflow:hidden;text-overflow:ellipsis"{title}>{text}</div>'
# What a card must show whole wraps instead of being cut: its scores, and the predicted class with its
# probability (a card is a fifth of the page: one line cut them off at any width). `lines`: the height it keeps at
# least, so a row's cards still line up when one class name wraps and the others do not.
_WHOLE = ('<div class="{cls}" style="white-space:normal;overflow-wrap:anywhere;min-height:{lines}lh"{title}>'
          '{text}</div>')
SCORE_CLASS, PREDICTED_CLASS = "card-score", "card-predicted"  # for the browser tests that measure them


def card_caption(first: str, file_name: str, label: str | None, predicted: str | None, prob: float | None,
                 photo: Sequence[str] | None = None, tags: str | None = None) -> str:
    """HTML under a thumbnail: `first` (e.g. the similarity, whole), the file name, the label, and the predicted
    label with its probability (whole, on up to two lines); the full file name and the raw labels are tooltips.
    `photo`: more lines, when and with what and where it was taken (ui/services/photo_info.card_lines); an empty
    one is kept, so the cards of a grid where some photos have them stay the same height. With `tags`
    (views.tags_text), a last line of automatic tags, all of them in its tooltip."""
    name = html.escape(file_name)
    shown_prob = f'<span style="white-space:nowrap">({fmt_prob(prob)})</span>'
    out = _WHOLE.format(cls=SCORE_CLASS, lines=1, title="", text=first) if first else ""
    out += (_LINE.format(title=f' title="{name}"', text=f'<code style="white-space:nowrap">{name}</code>')
            + _LINE.format(title=f' title="label: {html.escape(display_label(label))}"',
                           text=f"label: {_label_html(label)}")
            + _WHOLE.format(cls=PREDICTED_CLASS, lines=2, title="",
                            text=f"predicted: {_label_html(predicted)} {shown_prob}")
            + "".join(_LINE.format(title=f' title="{html.escape(line)}"' if line else "",
                                   text=html.escape(line) if line else "&nbsp;") for line in photo or ()))
    if tags is not None:
        shown = html.escape(tags) if tags else "–"
        out += _LINE.format(title=f' title="automatic tags: {shown}"', text=f"tags: {shown}")
    return out


def result_caption(r: SearchResult, photo: Sequence[str] | None = None, tags: Sequence[Any] | None = None,
                   score: str = "similarity") -> str:
    """A search result's caption: its score (`score` names it; first the class-aware score when that is what
    ranked it), file name, true and predicted label (probability); `photo` as in card_caption; with `tags`, its
    top automatic tags on a last line."""
    rank_score = getattr(r, "rank_score", None)
    first = (f"{score} <b>{r.score:.3f}</b>" if rank_score is None
             else f"score <b>{rank_score:.3f}</b> · {score} <b>{r.score:.3f}</b>")
    return card_caption(first, r.file_name, r.label, r.predicted_label, r.predicted_prob, photo,
                        None if tags is None else tags_text(tags))
