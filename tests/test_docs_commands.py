"""Every command that README.md and docs/*.md show is parsed by the real argument parser of
what it runs (`mnistlab`, `python -m mnistlab...`, `python benchmarks/...`, `python
examples/...`), so the docs cannot drift from the options. Nothing is run: parsing stops at
`parse_args`. One child process parses them all (the scripts' module-level code, e.g. a
thread setting, stays out of the test process)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# What a command starts with; `benchmarks/x.py` alone (in prose) is read as `python ...`.
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+\s+|flock\s+\S+\s+|time\s+)*(mnistlab(?:\s|$)|python3?\s+-m"
                     r"\s+mnistlab|(?:python3?\s+)?(?:benchmarks|examples)/\S+\.py(?:\s|$))")
# Inline spans that are a synopsis, not a command: "RUN…", "[--csv|--json]", "on|off".
SYNOPSIS = re.compile(r"…|\.\.\.|\[|\||\bCOMMAND\b")
# Placeholders that stand for a number in inline spans ("--index N", "--seed S").
NUMBERS = {"N": "1", "S": "0", "C": "8"}


def commands_in(path: Path) -> list[tuple[str, list[str]]]:
    """(where, argv) for each command in `path`'s code blocks and inline code."""
    text = path.read_text()
    found: list[tuple[str, list[str]]] = []
    blocks = list(re.finditer(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M))
    for block in blocks:
        start = text.count("\n", 0, block.start(1)) + 1
        lines = block.group(1).split("\n")
        i = 0
        while i < len(lines):
            line, number = lines[i], start + i
            while line.endswith("\\") and i + 1 < len(lines):  # continued lines
                i += 1
                line = line[:-1] + " " + lines[i]
            i += 1
            line = line.strip().removeprefix("$ ")
            if not COMMAND.match(line) or re.match(r"mnistlab [\w-]+:", line):
                continue  # not a command, or a line of output ("mnistlab doctor: ...")
            words = [w for w in shlex.split(line, comments=True) if w not in ("...", "…")]
            found.append((f"{path.name}:{number}", words))
    outside = re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text,
                     flags=re.S | re.M)
    for span in re.finditer(r"`([^`]+)`", outside):
        line = " ".join(span.group(1).split())
        if COMMAND.match(line) and not SYNOPSIS.search(line) and line != "mnistlab":
            words = [NUMBERS.get(w, w) for w in shlex.split(line)]
            if len(words) == 2 and words[0] == "mnistlab":
                words.append("--help")  # a command named in prose: it must exist
            found.append((f"{path.name}:{text.count(chr(10), 0, span.start()) + 1}", words))
    return found


def argv_of(words: list[str]) -> tuple[str, str, list[str]]:
    """(kind, target, arguments): kind 'cli' (mnistlab), 'module', 'script', or 'file' (a
    script named in prose, `benchmarks/zoo.py`: it must exist; it is not run)."""
    while words and (re.match(r"[A-Z_]+=", words[0]) or words[0] in ("flock", "time")):
        words = words[2:] if words[0] == "flock" else words[1:]  # wrappers, VAR=value
    if words[0] == "mnistlab":
        return "cli", "mnistlab", words[1:]
    if words[0].startswith(("benchmarks/", "examples/")):
        if len(words) == 1:
            return "file", words[0], []
        words = ["python", *words]
    if words[1] == "-m":
        return ("cli", "mnistlab", words[3:]) if words[2] == "mnistlab" else (
            "module", words[2], words[3:])
    return "script", words[1], words[2:]


# The child: parse each command with the real parser, stopping right after parse_args.
DRIVER = textwrap.dedent("""
    import argparse, contextlib, io, json, runpy, sys
    from pathlib import Path

    class Parsed(Exception):
        pass

    original = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        original(self, args, namespace)
        raise Parsed

    results = []
    for kind, target, argv in json.load(sys.stdin):
        err = io.StringIO()
        status = "parsed"
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                if kind == "cli":
                    from mnistlab.cli import build_parser
                    build_parser().parse_args(argv)
                elif kind == "file":
                    status = "parsed" if Path(target).is_file() else "no such file"
                elif kind == "script" and "argparse" not in Path(target).read_text():
                    status = "takes no options (not run)"
                else:
                    argparse.ArgumentParser.parse_args = parse_only
                    sys.argv = [target, *argv]
                    if kind == "module":
                        runpy.run_module(target, run_name="__main__", alter_sys=True)
                    else:
                        sys.path.insert(0, str(Path(target).parent))
                        runpy.run_path(target, run_name="__main__")
                    status = "ran without parsing any options"
            except Parsed:
                pass
            except SystemExit as e:  # --help exits 0; a usage error exits 2
                status = "parsed" if e.code in (0, None) else f"exit {e.code}"
            except Exception as e:
                status = f"{type(e).__name__}: {e}"
            finally:
                argparse.ArgumentParser.parse_args = original
        results.append([status, err.getvalue().strip()])
    print(json.dumps(results))
""")


def parse_all(commands: list[tuple[str, str, list[str]]]) -> list[tuple[str, str]]:
    done = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(commands),
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    return [tuple(r) for r in json.loads(done.stdout.strip().splitlines()[-1])]


ALL = [(where, words) for path in DOCS for where, words in commands_in(path)]


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[str, str]]:
    outcomes = parse_all([argv_of(words) for _, words in ALL])
    return {f"{where} {' '.join(words)}": outcome
            for (where, words), outcome in zip(ALL, outcomes, strict=True)}


def test_the_docs_show_commands_of_every_kind():
    kinds = {argv_of(words)[0] for _, words in ALL}
    assert kinds == {"cli", "module", "script", "file"}
    assert len(ALL) > 60
    targets = {argv_of(words)[1] for _, words in ALL}
    assert {"mnistlab", "mnistlab.scratch.experiments", "benchmarks/zoo.py"} <= targets


@pytest.mark.parametrize("command", [f"{where} {' '.join(words)}" for where, words in ALL])
def test_every_documented_command_parses(results, command):
    status, stderr = results[command]
    assert status == "parsed", f"{command}: {status}: {stderr}"


def test_a_drifted_command_is_caught():
    """The check can fail: the README's old spelling of the experiments' data option, an
    option no command has, and a bad choice."""
    wrong = [("module", "mnistlab.scratch.experiments", ["--data-dir", "x"]),
             ("cli", "mnistlab", ["train", "--no-such-option"]),
             ("cli", "mnistlab", ["eval", "RUN", "--split", "everything"]),
             ("script", "benchmarks/zoo.py", ["--no-such-option"])]
    outcomes = parse_all(wrong)
    assert [status for status, _ in outcomes] == ["exit 2"] * 4
    assert "--data-dir" in outcomes[0][1]


def test_the_extractor_reads_blocks_continuations_and_inline_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent("""\
        Run `mnistlab plot RUN…` or `mnistlab featuremaps CHECKPOINT --index N`, see
        `benchmarks/realworld.py RUN`.

        ```sh
        $ mnistlab train --epochs 2 \\
            --model lenet5       # a comment
        mnistlab doctor: fast; loss cross_entropy
        MNISTLAB_DATA=/data python -m mnistlab.scratch.experiments --only batch
        ```
        """))
    assert commands_in(page) == [
        ("page.md:5", ["mnistlab", "train", "--epochs", "2", "--model", "lenet5"]),
        ("page.md:8", ["MNISTLAB_DATA=/data", "python", "-m", "mnistlab.scratch.experiments",
                       "--only", "batch"]),
        ("page.md:1", ["mnistlab", "featuremaps", "CHECKPOINT", "--index", "1"]),
        ("page.md:2", ["benchmarks/realworld.py", "RUN"]),
    ]
