"""Every code block in the README and in docs/ runs as written.

- ```python blocks: each document's blocks run in order, in one fresh interpreter, in
  an empty folder (what they write lands there);
- ```yaml blocks: each is a scenario and must validate (the data it names need not be
  present);
- ```sh blocks: each command must be one the project knows: a ``make`` target of the
  Makefile, ``python -m search.run`` with arguments that parse and a scenario (with its
  ``--set`` overrides) that validates, ``python -m search.evaluate`` with arguments that
  parse, ``python -m search.plot`` and the scripts of
  bench/ and examples/ with their ``--help``. Commands of other tools (``dask``) are
  left to them. Running them whole (a search, the benchmarks) takes minutes to hours:
  that is ``make run``'s and ``make bench``'s job, not this test's.

Blocks without a language (printed output) are not code.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.config import load_scenario
from search.run import parse_args

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[tuple[Path, str]]:
    return [(doc, body) for doc in DOCS for lang, body in FENCE.findall(doc.read_text()) if lang == language]


def ids(items) -> list[str]:
    return [f"{doc.name}:{i}" for i, (doc, _) in enumerate(items)]


def test_the_documents_have_code_to_check():
    assert {doc.name for doc, _ in blocks("python")} >= {"README.md", "simulator.md", "models.md"}
    assert blocks("yaml") and blocks("sh")


@pytest.mark.parametrize("doc", [d for d in DOCS if "```python" in d.read_text()], ids=lambda d: d.name)
@pytest.mark.slow
def test_python_blocks_run(doc, tmp_path):
    code = "\n\n".join(body for lang, body in FENCE.findall(doc.read_text()) if lang == "python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["CROSSBAR_DATA"] = str(tmp_path / "data")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, f"{doc.name}'s Python failed:\n{out.stderr[-3000:]}"


@pytest.mark.parametrize("doc, body", blocks("yaml"), ids=ids(blocks("yaml")))
def test_yaml_blocks_are_valid_scenarios(doc, body):
    data = yaml.safe_load(body)
    if data.get("variants") and data.get("mode") != "study":
        data["mode"] = "study"  # a list of every key shows study mode's variants too
    scenario, _ = load_scenario(data=data, check_data=False)
    assert scenario.presets


def _commands(body: str) -> list[list[str]]:
    commands = []
    for line in body.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            commands.append(shlex.split(line))
    return commands


SH = [(doc, words) for doc, body in blocks("sh") for words in _commands(body)]


@pytest.mark.parametrize("doc, words", SH, ids=[f"{d.name}:{' '.join(w)[:60]}" for d, w in SH])
def test_shell_commands_are_ones_the_project_knows(doc, words, monkeypatch):
    while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value prefixes
        words = words[1:]
    if words[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
        assert set(words[1:]) <= set(targets), f"{doc.name}: no such make target in {words}"
        return
    if words[0] == "dask":
        return  # Dask's own command
    python = words[0] in ("python", ".venv/bin/python")
    assert python, f"{doc.name}: an unknown command: {' '.join(words)}"
    if words[1:3] == ["-m", "search.run"]:
        args = parse_args(words[3:])
        monkeypatch.chdir(ROOT)
        load_scenario(ROOT / args.scenario, args.overrides, check_data=False)
        return
    if words[1:3] == ["-m", "search.evaluate"]:
        from search.evaluate import parse_args as evaluate_args

        evaluate_args(words[3:])  # the arguments parse; the checkpoint and module are the reader's
        return
    if words[1:3] == ["-m", "search.plot"]:
        words = [sys.executable, "-m", "search.plot"]
    else:
        script = ROOT / words[1]
        assert script.is_file(), f"{doc.name}: no such script {words[1]}"
        words = [sys.executable, str(script)]
    out = subprocess.run([*words, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
