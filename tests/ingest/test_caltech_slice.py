"""Real EfficientNet-Lite0 weights on a few Caltech-101 classes: accuracy must be far above chance."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.ingest.embed import embed_paths
from imgsearch.ingest.scan import scan_folder
from imgsearch.models.experiment import run_experiment
from tests.helpers import SHARED_CALTECH

CLASSES = ("airplanes", "Faces_easy", "Leopards", "Motorbikes", "watch", "sunflower")

pytestmark = [
    pytest.mark.dataset,
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_CALTECH.is_dir(), reason=f"Caltech-101 copy not found at {SHARED_CALTECH}"),
]


def test_lite0_features_separate_caltech_classes(tmp_path, lite0):
    for name in CLASSES:
        (tmp_path / name).mkdir()
        for src in sorted((SHARED_CALTECH / name).iterdir())[:24]:
            (tmp_path / name / src.name).symlink_to(src)
    images = scan_folder(tmp_path).images
    assert len(images) == 24 * len(CLASSES)
    emb = embed_paths(lite0, [im.path for im in images], batch_size=16, num_workers=1, progress=False)
    y = np.array([images[i].label for i in emb.ok])
    result = run_experiment(emb.vectors, y, k=len(CLASSES), rf_trees=100)
    chance = 1 / len(CLASSES)
    assert result.metrics["svm.accuracy"] >= 0.85 > 4 * chance
    assert result.metrics["random_forest.accuracy"] >= 0.7
    assert result.metrics["retrieval_loo.p@10"] >= 0.75
    assert result.metrics["kmeans.nmi"] >= 0.6
