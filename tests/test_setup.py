"""The README's two commands and the environment files agree with one another."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name.lower())] = version
    return pins


def test_lock_pins_every_dependency_within_its_range() -> None:
    pins = _lock()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
        requirement = Requirement(spec)
        name = re.sub(r"[-_.]+", "-", requirement.name.lower())
        assert name in pins, f"{name} is a dependency but requirements.lock does not pin it"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_torch_is_pinned_to_the_cpu_build_on_disk() -> None:
    assert _lock()["torch"] == "2.13.0"
    assert '"torch==2.13.0"' in (ROOT / "pyproject.toml").read_text()
    assert not {"timm", "torchvision"} & set(_lock())


def test_makefile_installs_the_lock_and_registers_the_kernel() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements.lock" in makefile
    assert "ipykernel install --sys-prefix --name ctrip" in makefile
    for target in ("book:", "test:"):
        assert re.search(rf"^{target} \$\(STAMP\)", makefile, re.M), target
    assert re.search(r"^\$\(STAMP\): requirements.lock pyproject.toml", makefile, re.M)


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_environment_yml_mirrors_the_lock() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    assert "-r requirements.lock" in pip_section


def test_notebook_templates_carry_no_outputs() -> None:
    import nbformat

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name
        assert any("parameters" in c.metadata.get("tags", []) for c in notebook.cells), path.name


def test_readme_python_example_opens_the_cohort_make_book_makes(tmp_path: Path) -> None:
    from ctrip.config import load_settings
    from ctrip.pipeline.plan import build_plan
    from ctrip.pipeline.runner import cohort_path
    from tests.factories import make_tiny_cohort

    readme = (ROOT / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    opened = re.search(r'Cohort\.open\("([^"]+)"\)', example).group(1)
    plan = build_plan(load_settings("default"))
    assert Path(opened) == cohort_path(Path("results/default"), plan)
    # The example runs as written on a cohort at that path.
    make_tiny_cohort(tmp_path / opened)
    namespace: dict = {}
    exec(example.replace(opened, str(tmp_path / opened)), namespace)
    assert len(namespace["train"]) > 0
