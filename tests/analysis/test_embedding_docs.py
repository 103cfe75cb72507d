"""The docs state the embedding rule the code applies. Kept apart from test_embedding.py: it reads
docs/ and README.md, which the mutation chunk's copy of the tree (tests/mutation/run.py) does not hold."""
from __future__ import annotations

import numpy as np


def test_the_docs_state_the_rule_the_code_applies() -> None:
    """docs/analysis.md and README.md name the method `embed` uses for each head count: UMAP from
    MIN_UMAP_HEADS heads on, PCA below; no sentence reports UMAP on fewer heads."""
    import re
    from pathlib import Path

    from attnlife.analysis.embedding import MIN_UMAP_HEADS, embed

    root = Path(__file__).resolve().parents[2]
    docs = (root / "docs" / "analysis.md").read_text()
    section = docs[docs.index("## Trajectory embedding"):]
    section = section[:section.index("\n## ", 4)]
    assert f"from {MIN_UMAP_HEADS} heads on" in section and "principal components" in section
    for text in (docs, (root / "README.md").read_text()):
        for n in re.findall(r"umap[^.\n]{0,40}? on (\d+) heads", text, flags=re.I):
            assert int(n) >= MIN_UMAP_HEADS, f"a sentence says UMAP ran on {n} heads"
    rng = np.random.default_rng(0)
    assert embed(rng.standard_normal((MIN_UMAP_HEADS - 1, 6)))[1].startswith("pca")
