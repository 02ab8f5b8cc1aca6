"""README.md and docs/*.md say only what exists: links resolve, quoted commands name existing files, spec keys the
harness knows, verbs and options the CLI has.

What is checked, per page:

* every relative Markdown link (``[text](path)``, ``![alt](path)``) resolves to a file or folder, and an anchor
  (``path#heading``, ``#heading``) to a heading of that page (GitHub's slugs);
* every command line in a code block (``yolo-necks``, ``yolo``, ``python3``, ``bash``, ``mlflow``, ``ray``, ``git``,
  ``pip``; ``$ `` prompts and ``&&`` chains understood) and every code span in the prose: each file it names exists
  (a repository path, a module path such as ``execute/local.py``, a model or data YAML of this repository or of
  ultralytics, an ultralytics weights name); placeholders (``my_spec.yaml``, ``path/to/...``, upper-case words) and
  outputs (``runs/...``, ``ablations/runs/...``, ``/tmp/...``) are not files to find;
* ``yolo-necks VERB``: VERB is in ``yolo_necks.cli.VERBS`` and every ``--option`` appears in ``yolo-necks VERB
  --help``; ``key=value`` of ``yolo-necks ablate`` is a spec key (dotted keys too: ``speed.*``, ``cpu.*``,
  ``data_params.*``, ``seeds.*``, ``train_args.*``) or an ultralytics training key; ``yolo-necks data build NAME
  k=v``: a built-in dataset and its parameters; ``edit``/``positions`` keys are theirs;
* every ``.[extras]`` of a pip command is an extra of pyproject.toml;
* every YAML code block that is not a model YAML is a spec snippet: its keys, nested keys and arm keys are known;
  inline arm snippets (``{name: ..., block: ...}``) use arm keys only;
* every file name quoted as a string in a Python block (``YOLO("model_yamls/yolov8n-pyramid.yaml")``) exists.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from functools import lru_cache
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = {"yolo-necks", "yolo", "python", "python3", "bash", "mlflow", "ray", "git", "pip"}
SOURCE_ROOTS = {"ablations", "model_yamls", "docs", "tests", "plugins", ".ci"}
MODULE_ROOTS = {"ablation", "records", "spec", "prepare", "execute", "analyse", "blocks", "datasets"}
OUTPUT_PREFIXES = ("ablations/runs", "runs/", "/", "~", "$", "./runs")
OUTPUT_NAMES = {"spec.yaml", "args.yaml"}  # written into a sweep folder / an ultralytics run folder
VERB_KEYS = {"edit": {"insert", "replace", "args", "out"}, "positions": {"scale"}}
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SPAN = re.compile(r"(`+)(.+?)\1", re.S)


# ---------------------------------------------------------------------------------------------- what exists
@lru_cache(maxsize=None)
def spec_keys():
    from yolo_necks.ablation.spec.keys import ARM_KEYS, CONTROLLED_TRAIN_KEYS, KEYS, SPEED_KEYS
    from yolo_necks.ablation.spec.overrides import ultralytics_train_keys

    return KEYS, SPEED_KEYS, set(ARM_KEYS), set(ultralytics_train_keys()) - set(CONTROLLED_TRAIN_KEYS)


@lru_cache(maxsize=None)
def datasets() -> dict[str, set[str]]:
    from yolo_necks.datasets import BUILTIN, dataset_params

    return {name: set(dataset_params(name)) for name in BUILTIN}


@lru_cache(maxsize=None)
def verbs() -> dict:
    from yolo_necks.cli import VERBS

    return VERBS


@lru_cache(maxsize=None)
def verb_help(verb: str) -> str:
    """What ``yolo-necks VERB --help`` prints."""
    from yolo_necks.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main([verb, "--help"])
        except SystemExit:
            pass
    return out.getvalue()


@lru_cache(maxsize=None)
def extras() -> set[str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pip's vendored tomli
        from pip._vendor import tomli as tomllib
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


@lru_cache(maxsize=None)
def ultralytics_files() -> tuple[frozenset[str], frozenset[str]]:
    """(every YAML name ultralytics ships under cfg/, its weights names)."""
    import ultralytics
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    cfg = Path(ultralytics.__file__).parent / "cfg"
    return frozenset(p.name for p in cfg.rglob("*.yaml")), frozenset(GITHUB_ASSETS_NAMES)


@lru_cache(maxsize=None)
def source_names() -> frozenset[str]:
    """Names of the Python files of the package, the tests and the scripts (for a bare ``run.py``)."""
    return frozenset(p.name for d in ("plugins", "tests", "ablations") for p in (ROOT / d).rglob("*.py"))


def unscaled(name: str) -> str:
    """``yolov8n-dyca.yaml`` -> ``yolov8-dyca.yaml``: the scale letter ultralytics strips (yaml_model_load)."""
    return re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", name)


def is_placeholder(token: str) -> bool:
    """A name that stands for the reader's own (``my_spec.yaml``, ``path/to/data.yaml``, ``PROJECT/NAME``, ``<repo>``),
    a URL, or an output of a run (``runs/...``, ``ablations/runs/...``, ``/tmp/...``)."""
    t = token.strip("/")
    capitals = any(re.fullmatch(r"[A-Z][A-Z0-9_]+", word) and word not in ("README", "ARCHITECTURE")
                   for word in re.split(r"[/.@:=-]", t))
    return (t.startswith(("path/to/", "my_", "my-", "my.", "<")) or "://" in t or capitals
            or token.startswith(OUTPUT_PREFIXES) or t in OUTPUT_NAMES)


def path_problem(token: str) -> str | None:
    """Why ``token``, taken as a file name, names nothing that exists (None: it exists, or is not a file to find)."""
    token = token.strip().strip("'\"").rstrip(".,;:)")
    if not token or " " in token or "*" in token or token.startswith("-"):
        return None
    parts = token.split("/")
    name = parts[-1] or (parts[-2] if len(parts) > 1 else "")
    yamls, weights = ultralytics_files()
    pkg = ROOT / "plugins" / "yolo_necks"
    if parts[0] in SOURCE_ROOTS:
        path = ROOT / token
        found = path.exists() or (parts[0] == "model_yamls" and (path.parent / unscaled(path.name)).exists())
        why = f"'{token}' does not exist in the repository"
    elif parts[0] in MODULE_ROOTS and token.endswith(".py"):
        found = (pkg / token).exists() or (pkg / "ablation" / token).exists()
        why = f"'{token}' is no module of plugins/yolo_necks/ or plugins/yolo_necks/ablation/"
    elif len(parts) > 1:
        return None  # another relative path (an output, a user's file): nothing to find
    elif name.endswith((".yaml", ".yml")):
        here = [ROOT / d / n for d in ("", "model_yamls", "ablations") for n in (name, unscaled(name))]
        found = any(p.exists() for p in here) or name in yamls or unscaled(name) in yamls
        why = f"'{name}' is in neither the repository's root, model_yamls/ or ablations/ nor ultralytics' YAMLs"
    elif name.endswith(".py"):
        found, why = name in source_names(), f"'{name}' is no Python file of this repository"
    elif name.endswith(".pt"):
        found, why = name in weights, f"'{name}' is not an ultralytics weights name"
    else:
        return None
    return None if found or is_placeholder(token) else why


# ------------------------------------------------------------------------------------------------ Markdown
def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def strip_code(text: str) -> str:
    """The text without fenced code blocks (same line count)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in strip_code(text).splitlines():
        m = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


def code_blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1).lower(), m.group(2)) for m in FENCE.finditer(text)]


def prose_spans(text: str) -> list[str]:
    return [m.group(2).strip() for m in SPAN.finditer(strip_code(text))]


# ----------------------------------------------------------------------------------------------- the checks
def link_problems(text: str, page: Path) -> list[str]:
    problems = []
    for target in LINK.findall(re.sub(r"`[^`\n]*`", "", strip_code(text))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            problems.append(f"link '{target}': {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest} "
                            "does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            problems.append(f"link '{target}': no heading '#{anchor}' in {dest.name}")
    return problems


def command_lines(block: str) -> list[list[str]]:
    """The commands of a shell block, as token lists (continuations joined, chains split, comments dropped)."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        line = re.sub(r"^\s*\$\s+", "", line).strip()
        words = line.split()
        if not words or words[0] not in COMMANDS or len(words) > 1 and words[1].endswith(":"):
            continue  # not a command: output, a comment, an error line ('yolo-necks ablate: error: ...')
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as e:
            out.append(["<unparsable>", line, str(e)])
            continue
        cmd: list[str] = []
        for t in tokens + ["&&"]:
            if t in ("&&", "||", ";", "|"):
                while cmd and re.match(r"^[A-Z_][A-Z0-9_]*=", cmd[0]):  # VAR=value before a command
                    cmd.pop(0)
                if cmd and cmd[0] in COMMANDS:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(t)
    return out


def ablate_key_problem(key: str, value: str) -> str | None:
    keys, speed_keys, arm_keys, train_keys = spec_keys()
    root, _, rest = key.partition(".")
    if root not in keys:
        if not rest and root in train_keys:
            return None
        return f"'{key}=' is neither a spec key nor an ultralytics training key"
    if root == "data" and not rest and value not in datasets() and not value.endswith((".yaml", ".yml")):
        return f"'data={value}' is neither a built-in dataset ({', '.join(datasets())}) nor a data YAML"
    if not rest:
        return None
    sub = rest.split(".")[0]
    known = {"speed": set(speed_keys), "cpu": set(keys), "seeds": {"min", "max", "target"}, "train_args": train_keys,
             "data_params": set().union(*datasets().values())}.get(root)
    if known is None or sub not in known:
        return f"'{key}=': '{sub}' is not a key of '{root}'"
    return None


def command_problems(cmd: list[str]) -> list[str]:
    if cmd[0] == "<unparsable>":
        return [f"command '{cmd[1]}' does not parse ({cmd[2]})"]
    problems = []
    text = " ".join(cmd)
    for t in cmd[1:]:
        if t.startswith(".[") or t.startswith("yolo-necks["):
            unknown = set(t.split("[", 1)[1].rstrip("]").split(",")) - extras()
            if unknown:
                problems.append(f"extra(s) {', '.join(sorted(unknown))} not in pyproject.toml (in: {text})")
            continue
        value = t.split("=", 1)[1] if "=" in t and not t.startswith("-") else t
        why = path_problem(value)
        if why:
            problems.append(f"{why} (in: {text})")
    if cmd[0] != "yolo-necks" or len(cmd) < 2 or cmd[1].startswith("-"):
        return problems
    verb, args = cmd[1], cmd[2:]
    if verb not in verbs():
        return problems + [f"'{verb}' is not a yolo-necks verb ({', '.join(verbs())}) (in: {text})"]
    for a in args:
        option = a.split("=")[0]
        if a.startswith("--") and option != "--help" and not re.search(re.escape(option) + r"(?![\w-])",
                                                                         verb_help(verb)):
            problems.append(f"option '{option}' is not in 'yolo-necks {verb} --help' (in: {text})")
    pairs = [a.split("=", 1) for a in args if "=" in a and not a.startswith("-")]
    if verb == "ablate":
        problems += [f"{why} (in: {text})" for k, v in pairs if (why := ablate_key_problem(k, v))]
        problems += [f"the spec '{a}' is not a YAML file (in: {text})" for a in args
                     if "=" not in a and not a.startswith("-") and not a.endswith((".yaml", ".yml"))]
    elif verb in VERB_KEYS:
        problems += [f"'{k}=' is not a key of 'yolo-necks {verb}' (in: {text})" for k, _ in pairs
                     if k not in VERB_KEYS[verb]]
    elif verb == "data" and args[:1] == ["build"]:
        name = args[1] if len(args) > 1 else ""
        if name not in datasets():
            problems.append(f"'{name}' is not a built-in dataset (in: {text})")
        else:
            problems += [f"'{k}' is not a parameter of dataset '{name}' (in: {text})" for k, _ in pairs
                         if k not in datasets()[name] | {"root"}]
    return problems


def spec_problems(d: dict, where: str) -> list[str]:
    keys, speed_keys, arm_keys, train_keys = spec_keys()
    problems = [f"{where}: '{k}' is not a spec key" for k in d if k not in keys]
    nested = {"speed": set(speed_keys), "train_args": train_keys, "cpu": set(keys)}
    for k, known in nested.items():
        if isinstance(d.get(k), dict):
            problems += [f"{where}: '{k}.{s}' is not a known key" for s in d[k] if s not in known]
    if isinstance(d.get("seeds"), dict):
        problems += [f"{where}: 'seeds.{s}' is not a key" for s in d["seeds"] if s not in ("min", "max", "target")]
    if isinstance(d.get("data_params"), dict):
        data = d.get("data", "digits")
        known = datasets().get(data, set().union(*datasets().values()))
        problems += [f"{where}: 'data_params.{s}' is not a parameter of '{data}'" for s in d["data_params"]
                     if s not in known]
    for arm in d.get("arms") or []:
        if isinstance(arm, dict):
            problems += [f"{where}: arm key '{k}' is not one of {', '.join(sorted(arm_keys))}" for k in arm
                         if k not in arm_keys]
    for k in ("data", "model", "pretrained"):
        why = path_problem(str(d.get(k) or ""))
        if why:
            problems.append(f"{where}: key '{k}': {why}")
    return problems


def page_problems(text: str, page: Path) -> list[str]:
    """Everything wrong with one Markdown page (``page`` locates its relative links)."""
    problems = link_problems(text, page)
    for lang, block in code_blocks(text):
        if lang in ("", "bash", "sh", "shell", "console"):
            for cmd in command_lines(block):
                problems += command_problems(cmd)
        elif lang in ("yaml", "yml"):
            try:
                d = yaml.safe_load(block)
            except yaml.YAMLError as e:
                problems.append(f"a yaml block is not YAML ({e})")
                continue
            if isinstance(d, dict) and not {"backbone", "head"} & set(d):
                problems += spec_problems(d, "spec snippet")
        elif lang == "python":
            for s in re.findall(r"[\"']([^\"'\s]+\.(?:ya?ml|pt|py))[\"']", block):
                why = path_problem(s)
                if why:
                    problems.append(f"python snippet: {why}")
    for span in prose_spans(text):
        if " " in span and span.split()[0] in COMMANDS:
            # a usage line: optional parts in brackets ('[--mlflow-experiment NAME]'), '...' for more of the same
            usage = re.sub(r"\](?=\s|$)", "", re.sub(r"(^|\s)\[", r"\1", span.replace("...", " ")))
            for cmd in command_lines(usage):
                problems += command_problems(cmd)
        elif span.startswith("{name:"):
            try:
                arm = yaml.safe_load(span)
            except yaml.YAMLError as e:
                problems.append(f"arm snippet '{span}' is not YAML ({e})")
                continue
            problems += spec_problems({"arms": [arm]}, f"arm snippet '{span}'")
        elif " " not in span and ("/" in span or span.endswith((".py", ".yaml", ".yml"))):
            why = path_problem(span.split("=", 1)[-1])
            if why:
                problems.append(f"`{span}`: {why}")
    return problems


# -------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_names_only_what_exists(page):
    problems = page_problems(page.read_text(encoding="utf-8"), page)
    assert not problems, f"{page.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


def test_docs_folder_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in DOCS[1:] if f"(docs/{p.name}" not in readme]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_the_checks_catch_what_does_not_exist(tmp_path):
    """A page naming a missing file, link, anchor, verb, option, key, extra or arm key is reported, each once."""
    (tmp_path / "other.md").write_text("# A heading\n")
    bad = """# Page

[missing](nowhere.md) [bad anchor](other.md#no-such-heading) [fine](other.md#a-heading)

```bash
yolo-necks ablate ablations/no-such-spec.yaml epochs=3 speed.repeats=300
yolo-necks ablate no_such_key=1 speed.no_such=2 data=no-such-dataset
yolo-necks frobnicate
yolo-necks report ablations/runs/x --no-such-option
yolo train model=model_yamls/yolov8n-nothing.yaml data=coco8.yaml
python3 -m pip install -e ".[test,no-such-extra]"
yolo-necks data build digits no_such_param=1
```

```yaml
epochs: 3
no_such_spec_key: 1
arms:
  - {name: a, block: SPPF, baseline: true, colour: red}
```

Prose: `plugins/yolo_necks/ablation/no_such_module.py`, `execute/nothing.py`, `{name: b, blok: SKConv}`,
`yolo-necks compare A B [--no-such-flag F]`.
"""
    problems = page_problems(bad, tmp_path / "page.md")
    expected = ["nowhere.md", "no-such-heading", "no-such-spec.yaml", "no_such_key=", "speed.no_such",
                "no-such-dataset", "'frobnicate'", "--no-such-option", "yolov8n-nothing.yaml", "no-such-extra",
                "no_such_param", "no_such_spec_key", "colour", "no_such_module.py", "execute/nothing.py", "blok",
                "--no-such-flag"]
    reasons = [p.split(" (in: ")[0] for p in problems]
    for word in expected:
        assert sum(word in r for r in reasons) == 1, (word, problems)
    assert len(problems) == len(expected), problems

    good = """[fine](other.md#a-heading)

```bash
yolo-necks ablate ablations/placement.yaml epochs=3 speed.repeats=300 lr0=0.01 data=neon-trees cpu.epochs=2
yolo train model=model_yamls/yolov8n-dyca.yaml data=coco8.yaml   # a comment naming nothing.yaml
python3 -m pip install -e ".[test,ray,mlflow]" && python3 -m pytest -q
yolo-necks ablate: error: ablations/nothing.yaml: an error line, not a command
```

`plugins/yolo_necks/ablation/execute/local.py`, `records/columns.py`, `my_spec.yaml`, `runs/detect/x/best.pt`,
`yolo-necks report DIR --mlflow URI [--mlflow-experiment NAME]`, `pip install 'yolo-necks[ray]'`.
"""
    assert page_problems(good, tmp_path / "page.md") == []
