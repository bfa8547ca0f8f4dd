"""Every package of the source tree is installed: pyproject's explicit package list names them all
(a package missing there works in an editable install and is absent from a wheel)."""
import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_package_directory_is_in_pyproject():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = tool["package-dir"]
    found = set()
    for name, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join((name,) + rel.parts))
    # a sub-folder of ascend_sim that is mapped elsewhere (none today) would be counted twice
    assert set(tool["packages"]) == found
