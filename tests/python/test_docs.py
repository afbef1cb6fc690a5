"""The documentation says what is there: every relative link and `#anchor` in README.md,
docs/*.md and bench/results/HISTORY.md resolves, and every command in their `sh`/`bash` code
blocks exists (a script is there and executable, a `sluice` sub-command and the flags shown are
in the binary's `--help`).

Only the last test needs the binary. The others need neither it nor the packages conftest.py
imports, so they also run with any Python that has pytest:

    python3 -m pytest tests/python/test_docs.py --noconftest -k "not subcommands"
"""

import functools
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS, REPO / "bench" / "results" / "HISTORY.md"]

# Commands not checked, by their first words: well-known tools, which the reader installs.
# Any other command must be a form `command_check` knows, or the test fails.
WELL_KNOWN = [
    ("pip",),
    ("python", "-m", "venv"),
    ("python3", "-m", "venv"),
    ("docker", "compose"),
    ("helm",),
    ("curl",),
    ("perf",),
    ("printf",),
]
SHELL_BLOCKS = ("sh", "bash", "shell")

FENCE = re.compile(r"\s*(```|~~~)")
# `[text](target)` and `![alt](target)`, with an optional "title".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+).+?\1")
HEADING = re.compile(r"(#{1,6})\s+(.*?)[\s#]*$")


def _name(page, root=REPO):
    return str(page.relative_to(root))


def split_page(text):
    """The page's prose, as (line number, line), and its fenced code blocks, as
    (info string, line number of the first line, lines)."""
    prose, blocks, block = [], [], None
    for n, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if fence and block is None:
            block = (fence.group(1), line.strip()[3:].strip(), n + 1, [])
        elif block is not None and line.strip() == block[0]:
            blocks.append(block[1:])
            block = None
        elif block is not None:
            block[3].append(line)
        else:
            prose.append((n, line))
    return prose, blocks


# --- links ------------------------------------------------------------------------------------


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped except hyphens and
    underscores, each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


@functools.lru_cache(maxsize=None)
def anchors(page):
    """Every anchor of a page's headings, with GitHub's -1, -2 ... for repeated ones."""
    seen, out = {}, set()
    for _, line in split_page(page.read_text())[0]:
        m = HEADING.fullmatch(line)
        if m:
            base = slug(m.group(2))
            out.add(f"{base}-{seen[base]}" if base in seen else base)
            seen[base] = seen.get(base, 0) + 1
    return frozenset(out)


def links(page):
    """(line number, target) of each link of a page outside code, but external addresses."""
    out = []
    for n, line in split_page(page.read_text())[0]:
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                out.append((n, target))
    return out


def broken_links(page, root=REPO):
    """A message for each link of `page` whose file, or heading for its #anchor, is missing."""
    problems = []
    for n, target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page.resolve()
        where = f"{_name(page, root)}:{n}: {target}"
        if root.resolve() not in dest.parents and dest != root.resolve():
            problems.append(f"{where}: points outside the repository")
        elif not dest.exists():
            problems.append(f"{where}: no such file")
        elif anchor and dest.suffix != ".md":
            problems.append(f"{where}: an anchor into a file that is not Markdown")
        elif anchor and anchor not in anchors(dest):
            problems.append(f"{where}: no heading with anchor #{anchor} in {_name(dest, root)}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_resolve(page):
    assert page.exists(), f"{_name(page)} is missing"
    problems = broken_links(page)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_every_docs_page_is_linked_from_the_readme_and_links_back():
    def targets(page):
        return {(page.parent / t.partition("#")[0]).resolve() for _, t in links(page)}

    from_readme = targets(README)
    for page in DOCS:
        assert page.resolve() in from_readme, f"README.md does not link {_name(page)}"
        assert README.resolve() in targets(page), f"{_name(page)} has no link to the README"


def test_link_checker_reports_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Readme\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Title\n\n## A `code` heading, with punctuation!\n\n## Title\n\n"
        "[ok](#a-code-heading-with-punctuation) [ok](#title-1) ![ok](../README.md#readme)\n"
        "[missing](no-such-file.md) [missing](#no-such-heading) [outside](../../x.md)\n"
        "[external](https://example.com/x.md) `[in code](ignored.md)`\n"
        "```sh\n[in a block](ignored.md)\n```\n")
    problems = broken_links(page, root=tmp_path)
    assert [p.split(": ", 2)[1:] for p in problems] == [
        ["no-such-file.md", "no such file"],
        ["#no-such-heading", "no heading with anchor #no-such-heading in docs/page.md"],
        ["../../x.md", "points outside the repository"],
    ], problems


# --- commands ---------------------------------------------------------------------------------


def shell_commands(page):
    """(line number, argv) of each command in the page's sh/bash blocks: comments dropped, `\\`
    continuations joined, pipelines and `&&` lists split, leading VAR=value dropped."""
    out = []
    for info, start, body in split_page(page.read_text())[1]:
        if (info.split() or [""])[0] not in SHELL_BLOCKS:
            continue
        line, first = "", None
        for n, raw in enumerate(body, start):
            first = n if first is None else first
            if raw.rstrip().endswith("\\"):
                line += raw.rstrip()[:-1] + " "
                continue
            line += raw
            words = shlex.split(line, comments=True)
            argv = []
            for word in [*words, "|"]:
                if word in ("|", "&&", "||", ";"):
                    while argv and re.match(r"[A-Za-z_]\w*=", argv[0]):
                        argv.pop(0)
                    if argv:
                        out.append((first, argv))
                    argv = []
                else:
                    argv.append(word)
            line, first = "", None
    return out


def is_python(word):
    return word in ("python", "python3") or re.search(r"/bin/python3?$", word) is not None


def command_check(argv):
    """What a shown command needs: ("skip", tool), ("path", executable file), ("script", file)
    or ("sluice", the words after `sluice`). A ValueError for a form this test does not know."""
    for known in WELL_KNOWN:
        if tuple(argv[:len(known)]) == known:
            return ("skip", " ".join(known))
    if argv[0] == "sluice":
        return ("sluice", argv[1:])
    if argv[:2] == ["cargo", "run"] and "--" in argv:
        cargo = argv[:argv.index("--")]
        packages = [cargo[i + 1] for i, w in enumerate(cargo[:-1]) if w in ("-p", "--package")]
        if packages == ["sluice"]:
            return ("sluice", argv[argv.index("--") + 1:])
    if is_python(argv[0]) and len(argv) > 1 and argv[1].endswith(".py"):
        return ("script", argv[1])
    if "/" in argv[0] and not argv[0].startswith(("~", "/")):
        return ("path", argv[0])
    raise ValueError(
        f"test_docs.py does not know how to check {shlex.join(argv)!r}: teach command_check "
        "the form or, for a well-known tool, add it to WELL_KNOWN")


def shown_commands():
    return [(page, n, argv) for page in PAGES for n, argv in shell_commands(page)]


def test_every_shown_command_is_understood_and_its_file_exists():
    problems = []
    for page, n, argv in shown_commands():
        where = f"{_name(page)}:{n}: {shlex.join(argv)}"
        try:
            kind, what = command_check(argv)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        if kind in ("path", "script") and not (REPO / what).is_file():
            problems.append(f"{where}: {what} does not exist")
        elif kind == "path" and not os.access(REPO / what, os.X_OK):
            problems.append(f"{where}: {what} is not executable")
        elif kind == "sluice" and not what:
            problems.append(f"{where}: no sub-command")
    assert not problems, "commands in the docs:\n" + "\n".join(problems)


def test_the_readme_shows_the_two_commands():
    shown = [argv for _, argv in shell_commands(README)]
    assert ["cargo", "run", "--release", "-p", "sluice", "--", "serve"] in shown
    assert ["./tests/run.sh"] in shown


def test_command_forms(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```sh\n# a comment\nX=1 ./a.sh --flag \\\n  more   # why\n"
                    "printf '%s\\n' 'p w' | sluice hash-password\n```\n"
                    "```text\nnot a command\n```\n")
    assert shell_commands(page) == [(3, ["./a.sh", "--flag", "more"]),
                                    (5, ["printf", "%s\\n", "p w"]),
                                    (5, ["sluice", "hash-password"])]
    assert command_check(["./tests/run.sh"]) == ("path", "./tests/run.sh")
    assert command_check(["cargo", "run", "--release", "-p", "sluice", "--", "serve"]) == \
        ("sluice", ["serve"])
    assert command_check(["~/.venv/bin/python", "bench/x.py"]) == ("script", "bench/x.py")
    assert command_check(["helm", "install", "x"]) == ("skip", "helm")
    for unknown in (["make"], ["cargo", "build"], ["cargo", "run", "-p", "x", "--", "serve"]):
        with pytest.raises(ValueError, match="does not know how to check"):
            command_check(unknown)


def _help(binary, words):
    out = subprocess.run([binary, *words, "--help"], capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout + out.stderr


def test_sluice_subcommands_and_flags_exist():
    """For each `sluice <sub> [<subsub>] ...` shown, `sluice <sub> [<subsub>] --help` exits 0
    (clap) and lists every `--flag` shown."""
    from conftest import sluice_bin  # imported here: the tests above run without it

    binary = sluice_bin()
    problems = []
    for page, n, argv in shown_commands():
        kind, words = command_check(argv)
        if kind != "sluice" or not words:
            continue
        where = f"{_name(page)}:{n}: {shlex.join(argv)}"
        path = words[:1]
        code, text = _help(binary, path)
        if code == 0 and re.search(r"^Commands:", text, re.M) and len(words) > 1:
            path = words[:2]
            code, text = _help(binary, path)
        if code != 0:
            problems.append(f"{where}: `sluice {' '.join(path)} --help` exited {code}")
            continue
        for word in words[len(path):]:
            flag = re.match(r"\[?(--[a-z0-9][a-z0-9-]*)", word)
            if flag and not re.search(rf"(^|[\s,]){flag.group(1)}(?![\w-])", text, re.M):
                problems.append(f"{where}: `sluice {' '.join(path)} --help` has no {flag.group(1)}")
    assert not problems, "sluice commands in the docs:\n" + "\n".join(problems)
