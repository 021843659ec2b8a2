"""Shared fixtures for the Python tests: where the build and the models are."""
import os
import pathlib
import subprocess

import pytest

SOURCE_DIR = pathlib.Path(os.environ.get("TERN_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BUILD_DIR = pathlib.Path(os.environ.get("TERN_BUILD_DIR", SOURCE_DIR / "build"))
BIN_DIR = BUILD_DIR / "bin"
MODELS_DIR = pathlib.Path(os.environ.get("TERN_MODELS", pathlib.Path.home() / ".cache" / "tern" / "models"))
DEFAULT_MODEL = MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"


def binary(name: str) -> pathlib.Path:
    path = BIN_DIR / name
    if not path.exists():
        pytest.fail(f"{path} is not built")
    return path


@pytest.fixture(scope="session")
def default_model() -> pathlib.Path:
    if not DEFAULT_MODEL.exists():
        pytest.fail(f"{DEFAULT_MODEL} missing: run scripts/fetch-models")
    return DEFAULT_MODEL


def run(args, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
