"""README.md and docs/*.md: links that lead somewhere, a README for users, CI's test command.

README is the user's page; the reference (format, training, benchmarks) lives in docs/. A moved
or renamed file must not leave a link to nothing, and CI (.ci/run) runs README's test command.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 300  # a page a user reads; the rest belongs in docs/

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text without code: a `[a](b)` inside a code block or span is not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def local_links(page: Path):
    """(target file, anchor) of every link and image on the page that is not a web address."""
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        yield (page.parent / path).resolve() if path else page, anchor


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set:
    """The anchors GitHub gives the page's headings (a repeated one gets -1, -2, ...)."""
    seen, found = {}, set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def fenced_block_after(text: str, marker: str) -> str:
    """The first line of the first fenced code block after ``marker``."""
    block = re.search(r"^```[^\n]*\n(.*?)^```", text[text.index(marker):], re.S | re.M)
    return block.group(1).strip().splitlines()[0]


def first_ci_command() -> str:
    """The first line .ci/run runs, past its shebang, comments and shell set-up."""
    for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "set ", "cd ", "export ")):
            return line
    raise AssertionError(".ci/run runs nothing")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_local_link_leads_to_a_file(page):
    missing = [str(target.relative_to(ROOT)) if target.is_relative_to(ROOT) else str(target)
               for target, _ in local_links(page) if not target.exists()]
    assert not missing, f"{page.name} links to files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_anchor_into_a_page_names_a_heading(page):
    broken = [f"{target.name}#{anchor}" for target, anchor in local_links(page)
              if anchor and target.suffix == ".md" and target.exists() and anchor not in anchors(target)]
    assert not broken, f"{page.name} links to headings that do not exist: {broken}"


def test_readme_is_a_users_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < README_MAX_LINES
    for developer_path in ("runs/", "../shared"):
        assert developer_path not in text, f"README mentions {developer_path!r}: that belongs in docs/"


def test_readme_links_every_doc():
    linked = {target for target, _ in local_links(README)}
    unlinked = [doc.name for doc in DOCS if doc.resolve() not in linked]
    assert not unlinked, f"README does not link {unlinked}"


def test_ci_runs_the_readme_test_command():
    readme_command = fenced_block_after(README.read_text(encoding="utf-8"), "**Run the tests**")
    assert readme_command == "bash tools/setup.sh && .venv/bin/python -m pytest"
    assert first_ci_command() == readme_command


def test_slug_matches_githubs_anchors():
    assert slug("Speed on this machine (CPU)") == "speed-on-this-machine-cpu"
    assert slug("Pre-annotating an archive (`predict` on Ray)") == "pre-annotating-an-archive-predict-on-ray"
    assert slug("The tabs (Plugins ▸ napari-polyp ▸ Workspace)") == "the-tabs-plugins--napari-polyp--workspace"
