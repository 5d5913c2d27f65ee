"""`imgsearch teach`: teach a label from a few examples, a page of candidates at a time (registered by
ui/cli/main.py; the session itself is ui/services/teaching.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from imgsearch.models.teaching import DEFAULT_METHOD, METHODS
from imgsearch.ui.cli.common import DataDirOpt, console, fail, open_context, open_stores, quiet

# The id lists: each option takes every id after it, up to the next option (`--examples 12 57 90 --not 33`).
ID_OPTIONS = {"--examples": "examples", "--not": "not", "--accept": "accept", "--reject": "reject", "--skip": "skip"}
EPILOG = ("Id lists: --examples IDS (what the label shows; they are labelled at once), --not IDS (what it does "
          "not), --accept IDS, --reject IDS, --skip IDS (a reviewed page). Each takes every id after it: "
          "`imgsearch teach pet --examples 12 57 90 --not 33`, then `imgsearch teach pet --next`, then "
          "`imgsearch teach pet --accept 4 8 15 --reject 16 23`.")


def parse_ids(args: list[str]) -> dict[str, list[int]]:
    """The id lists from the arguments typer left over; a bad token fails with one line."""
    out: dict[str, list[int]] = {name: [] for name in ID_OPTIONS.values()}
    current = None
    for token in args:
        if token in ID_OPTIONS:
            current = ID_OPTIONS[token]
            continue
        if token.startswith("-"):
            fail(f"no such option {token!r}; see `imgsearch teach --help`")
        if current is None:
            fail(f"unexpected {token!r}: ids follow --examples, --not, --accept, --reject or --skip")
        for part in token.split(","):
            if not part:
                continue
            try:
                out[current].append(int(part))
            except ValueError:
                fail(f"{token!r} after {'--' + current} is not an image id")
    return out


def teach_cmd(
    context: typer.Context,
    label: Annotated[str, typer.Argument(help="The label to teach (a new name or an existing label).")],
    next_page: Annotated[bool, typer.Option("--next", help="Print the next page of candidates.")] = False,
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="Candidates per page.")] = 40,
    method: Annotated[str, typer.Option("--method", help=" | ".join(METHODS) + " (the ranker).")] = DEFAULT_METHOD,
    done: Annotated[bool, typer.Option("--done", help="Queue a training run so the classifiers learn the label "
                                                      "(`imgsearch worker` runs it).")] = False,
    forget: Annotated[bool, typer.Option("--forget", help="Drop the session's verdicts (labels stay).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status and candidates as JSON.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Teach a label from a few examples: give 3+ example ids (and optionally some that are not it), then review
    pages of candidates ranked by a model fitted on them against the rest of the collection; accepted images are
    labelled (catalogue and both stores), rejected ones become negatives, and each page is ranked afresh. The
    session is kept in the catalogue. Without an action, prints the session's status."""
    from imgsearch.ui.services import teaching

    if method not in METHODS:
        fail(f"--method must be one of {', '.join(METHODS)}; got {method!r}")
    ids = parse_ids(list(context.args))
    out: dict = {}
    with quiet(as_json), open_context("teach", data_dir=data_dir) as ctx:
        open_stores(ctx)
        if forget:
            out["forgotten"] = teaching.forget(ctx, label)
        if ids["examples"] or ids["not"]:
            teaching.add_examples(ctx, label, ids["examples"], ids["not"])
        if ids["accept"] or ids["reject"] or ids["skip"]:
            teaching.review(ctx, label, ids["accept"], ids["reject"], ids["skip"])
        state = teaching.status(ctx, label)
        if next_page:
            out["candidates"] = [vars(c) for c in teaching.candidates(ctx, label, k=k, method=method)]
        if done:
            out["job_id"] = teaching.finish(ctx, label)
    out = {"status": {**vars(state)}, **out}
    if as_json:
        print(json.dumps(out, indent=1))
        return
    console.print(f"{label!r}: {state.n_labelled} images labelled, {state.n_negative} negatives, {state.n_skipped} "
                  f"skipped ({state.n_reviewed} reviewed in this session)", highlight=False)
    if "forgotten" in out:
        console.print(f"forgot {out['forgotten']} verdicts of the session")
    if "candidates" in out:
        table = Table(title=f"Next {len(out['candidates'])} candidates for {label!r} ({method})",
                      title_justify="left")
        for column in ("id", "score", "current label", "path"):
            table.add_column(column)
        for c in out["candidates"]:
            table.add_row(str(c["id"]), f"{c['score']:.3f}", c["label"] or "–", c["path"])
        console.print(table)
        console.print(f"ids: {' '.join(str(c['id']) for c in out['candidates'])}", soft_wrap=True)
        console.print(f"review them: imgsearch teach {label} --accept IDS --reject IDS (the others: --skip IDS)",
                      highlight=False)
    elif not state.ready:
        console.print(f"give at least 3 examples: imgsearch teach {label} --examples ID ID ID", highlight=False)
    if "job_id" in out:
        console.print(f"queued training job {out['job_id']}: `imgsearch worker` runs it, and the classifiers then "
                      f"learn {label!r}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("teach", epilog=EPILOG, context_settings={"allow_extra_args": True,
                                                          "ignore_unknown_options": True})(teach_cmd)
