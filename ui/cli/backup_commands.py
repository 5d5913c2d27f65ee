"""`imgsearch backup DIR` and `imgsearch restore DIR` (ui/services/backup.py,
ui/services/restore.py); registered by ui/cli/main.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgsearch.ui.cli.common import DataDirOpt, console, fail, load_settings, open_context


def _server_index(ctx):
    """The Qdrant server collection of this backbone (IMGSEARCH_QDRANT_URL), or None for the embedded store."""
    from imgsearch.search.factory import open_index

    s = ctx.settings
    if not s.qdrant_url:
        return None
    return open_index("qdrant", s.data_dir, ctx.identity, ctx.store_options())


def backup_cmd(
    folder: Annotated[Path, typer.Argument(help="New or empty folder to write the backup into.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Copy the catalogue, the vector stores, the FAISS mirror and the trained models into FOLDER, consistently
    (writers wait meanwhile), with a manifest of checksums written last."""
    from imgsearch.ui.services.backup import BackupError, backup

    with open_context("backup", data_dir=data_dir) as ctx:
        qdrant = _server_index(ctx)
        try:
            report = backup(ctx.settings, ctx.identity, folder.expanduser().resolve(), qdrant=qdrant)
        except BackupError as exc:
            fail(str(exc))
        finally:
            if qdrant is not None:
                qdrant.close()
    for line in report.lines():
        console.print(line, highlight=False)
    console.print(f"backup complete: {report.folder / 'MANIFEST.json'}", highlight=False)


def restore_cmd(
    folder: Annotated[Path, typer.Argument(help="A folder written by `imgsearch backup`.")],
    force: Annotated[bool, typer.Option("--force", help="Replace the catalogue, stores and models of a data "
                                        "directory that is not empty.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Restore a backup into an empty data directory (checksums, completeness and backbone checked first), then
    check with `doctor` that the catalogue and the stores agree."""
    from imgsearch.models.backbones import BackboneUnavailable, load_backbone
    from imgsearch.ui.services.backup import BackupError
    from imgsearch.ui.services.restore import restore

    settings = load_settings(data_dir=data_dir)
    configured = None
    if settings.backbone != "auto":  # `auto`: the backup's recorded choice is restored with it
        try:
            configured = load_backbone(settings.backbone, resnet50_weights=settings.resnet50_weights,
                                       device=settings.device).identity
        except BackboneUnavailable as exc:
            fail(str(exc))
    factory = None
    if settings.qdrant_url:
        from imgsearch.models.identity import BackboneId
        from imgsearch.search.factory import open_index
        from imgsearch.search.options import StoreOptions
        from imgsearch.ui.services.restore import read_verified

        def factory():
            identity = configured or BackboneId.from_dict(read_verified(folder)["backbone"])
            options = StoreOptions(qdrant_url=settings.qdrant_url, api_key=settings.qdrant_api_key,
                                   qdrant_config=settings.qdrant_collection)
            return open_index("qdrant", settings.data_dir, identity, options)
    try:
        manifest = restore(settings, folder.expanduser().resolve(), configured, force=force, qdrant_factory=factory)
    except BackupError as exc:
        fail(str(exc))
    console.print(f"restored the backup of {manifest['created_at']} ({manifest['catalogue']['images']:,} images, "
                  f"backbone {manifest['backbone']['backbone']}) into {settings.data_dir}", highlight=False)
    _check_restored(data_dir)


def _check_restored(data_dir: Path | None) -> None:
    from imgsearch.ui.services import doctor

    with open_context("restore", data_dir=data_dir) as ctx:
        ctx.require_intact()
        stores = ctx.stores
        report = doctor.check(ctx.Session, stores, ctx.trained(), cache=ctx.cache,
                              current_run_id=ctx.trained_run_id())
        for line in report.lines():
            console.print(line, highlight=False)
    if not report.consistent:
        raise typer.Exit(1)


def finish_interrupted_restore(data_dir: Path | None) -> None:
    """Finish (or clean up after) a restore that was killed, saying so; `doctor` calls it before its check."""
    from imgsearch.ui.services.backup import BackupError
    from imgsearch.ui.services.restore import finish_interrupted

    try:
        done = finish_interrupted(load_settings(data_dir=data_dir))
    except BackupError as exc:
        fail(str(exc))
    if done:
        console.print(f"restore: {done}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("backup")(backup_cmd)
    app.command("restore")(restore_cmd)
