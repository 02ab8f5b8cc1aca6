"""The README keeps its promises: two commands on a fresh machine (the main job, and the tests that CI runs), a
length a newcomer reads, and a block table that is generated, not typed. Links, files, keys and verbs of every page
are checked by test_docs.py."""

import re
import shlex

from conftest import ROOT, YAML_DIR

from yolo_necks.tables import END, START, markdown

README = ROOT / "README.md"
BLOCKS_PAGE = ROOT / "docs" / "blocks.md"  # where the generated block table lives


def two_commands() -> list[str]:
    """The lines of the code block under the README's 'Two commands' heading."""
    text = README.read_text()
    section = re.search(r"^## Two commands[^\n]*\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README: no '## Two commands' section"
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section.group(1), re.S)
    assert block, "README: the 'Two commands' section has no code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def ci_install_and_test() -> tuple[str, str]:
    """The install line and the test command of .ci/run."""
    ci = (ROOT / ".ci" / "run").read_text()
    install = next(line for line in ci.splitlines() if "pip install" in line and not line.lstrip().startswith("#"))
    test = next(line.strip() for line in ci.splitlines() if "pytest" in line and not line.lstrip().startswith("#"))
    return install, test


def extras_of(line: str) -> set[str]:
    m = re.search(r"\.\[([\w,-]+)\]", line)
    return set(m.group(1).split(",")) if m else set()


def load_toml(text: str) -> dict:
    """pyproject.toml as a dict (tomllib from Python 3.11; pip's vendored tomli before that)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        from pip._vendor import tomli as tomllib
    return tomllib.loads(text)


def test_blocks_table_is_current():
    text = BLOCKS_PAGE.read_text()
    current = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert current == markdown(YAML_DIR).strip(), "run: yolo-necks blocks --markdown --readme docs/blocks.md"


def test_readme_names_the_two_commands():
    lines = two_commands()
    assert len(lines) == 2, f"README: the 'Two commands' block has {len(lines)} lines, not 2: {lines}"
    main_job, tests = (shlex.split(line, comments=True) for line in lines)
    # the first: a fresh clone, a fresh virtual environment, the package installed, the default ablation
    chain = " ".join(main_job).split(" && ")
    assert chain[0].startswith("git clone "), chain
    assert any(c.startswith("python3 -m venv ") for c in chain), chain
    assert "python3 -m pip install -e ." in chain, chain
    assert chain[-1] == "yolo-necks ablate", "the first command ends with the main job, the default ablation"
    # the second: the test extras, then the very test command CI runs
    install, test = ci_install_and_test()
    second = " ".join(tests).split(" && ")
    assert second[-1] == test == "python3 -m pytest -q", (second, test)
    assert second[0].startswith("python3 -m pip install -e "), second
    assert extras_of(lines[1]) == extras_of(install) and "test" in extras_of(install), (lines[1], install)


def test_readme_extras_exist():
    known = set(load_toml((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for line in two_commands():
        assert extras_of(line) <= known, (line, known)


def test_readme_states_the_time_and_the_machine():
    """The main job's time is named with the machine it was measured on and the date."""
    text = README.read_text()
    section = re.search(r"^## Two commands.*?(?=^## )", text, re.S | re.M).group(0)
    assert re.search(r"\d+ min", section) and re.search(r"AMD EPYC|Intel|NVIDIA|GPU", section), section
    assert re.search(r"20\d\d-\d\d-\d\d", section), "the measured time needs its date"


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= 260, f"README.md has {lines} lines; move detail to docs/ (at most ~250)"
