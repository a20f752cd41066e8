"""The version has one place: pyproject.toml."""

import keras_afl


def test_version_is_the_installed_distributions():
    # One place for the version (pyproject.toml): the package reads it back from the metadata.
    import tomllib
    from importlib import metadata

    from tests._checks import REPO

    with open(f"{REPO}/pyproject.toml", "rb") as f:
        declared = tomllib.load(f)["project"]["version"]
    assert keras_afl.__version__ == metadata.version("keras-afl") == declared
