"""The current models fitted again when their files are lost: the same training run's parameters, on the cached
features."""

from __future__ import annotations

from imgsearch.db import repository as repo


def refit_models(ctx) -> str:
    """Fit the current training run's models again, with its own parameters, when their files are lost.

    The features are cached, so this is the experiment alone (minutes at Caltech-101 size); it is recorded
    as a new training run, which becomes current.
    """
    from imgsearch.ui.services.training import TrainingParams, run_training

    run_id = ctx.trained_run_id()
    with ctx.Session() as s:
        params = dict((s.get(repo.Run, run_id).params or {}) if run_id is not None else {})
    default = TrainingParams.from_settings(ctx.settings)
    same = TrainingParams(
        k_clusters=params["k"] if params.get("k") is not None else default.k_clusters,
        seed=params["seed"] if params.get("seed") is not None else default.seed,
        val_fraction=params["val_fraction"] if params.get("val_fraction") is not None else default.val_fraction,
    )
    try:
        outcome = run_training(ctx, data=None, force=True, progress=False, params=same)
    except ValueError as exc:  # no cached features to fit on (a restored backup has no feature cache), K too big
        return (f"the models of training run {run_id} could not be loaded, and cannot be fitted again here ({exc}); "
                "ingest the collection's folders again (their features are embedded and cached), then run "
                "`imgsearch train --force`")
    return (f"the models of training run {run_id} could not be loaded: fitted them again from the cached features "
            f"with the same parameters, as training run {outcome.run_id} (now current)")
