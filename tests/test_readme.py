"""The README's block table is generated, not typed: it must equal what the generator prints now."""

from conftest import ROOT, YAML_DIR

from yolo_necks.tables import END, START, markdown


def test_blocks_table_is_current():
    text = (ROOT / "README.md").read_text()
    current = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert current == markdown(YAML_DIR).strip(), "run: yolo-necks blocks --markdown --readme README.md"


def test_readme_names_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert 'pip install -e ".[test]" && yolo-necks ablate' in text
    assert "python -m pytest -q" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m pytest -q" in ci
