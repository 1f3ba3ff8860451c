import os
from pathlib import Path

import pytest

SHARED_DIR = Path(os.environ.get("OMNI_AVSR_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="session")
def real_clip_path():
    """The real LRS3 test clip from the workplace's shared fixtures (never committed); skip when absent."""
    path = SHARED_DIR / "fixtures" / "lrs3_test_clip.mp4"
    if not path.exists():
        pytest.skip(f"real LRS3 clip not available at {path}")
    return path


@pytest.fixture(scope="session")
def mini_corpus(tmp_path_factory):
    """A small Mini-LRS corpus (synthetic speech + lip video in the LRS3 layout), generated once per session."""
    from omni_avsr.data.mini_lrs import main as generate

    root = tmp_path_factory.mktemp("mini_lrs")
    generate(["--output-dir", str(root), "--num-train", "24", "--num-test", "8", "--seed", "0", "--workers", "1", "--no-progress"])
    return root
