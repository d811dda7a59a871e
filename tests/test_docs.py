"""The docs stay navigable and the README's set-up stays CI's: every relative link in
README.md and docs/*.md resolves to a file and, with #anchor, to a heading of it (GitHub's
anchors), and .ci/run runs the README's two set-up commands as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.M)
EXTERNAL = ("http://", "https://", "mailto:")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (code blocks left out), repeated ones numbered."""
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        if count:
            seen[f"{base}-{count}"] = 1
    return set(seen)


def links(page: Path) -> list[str]:
    """Link targets in a page's prose (not in code blocks or code spans)."""
    return LINK.findall(CODE_SPAN.sub("", FENCE.sub("", page.read_text())))


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page):
        if target.startswith(EXTERNAL):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{page.name}: {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{page.name}: {target}: no heading with that anchor")
    return broken


def test_slug_matches_github():
    assert slug("Rate–task protocol") == "ratetask-protocol"
    assert slug("Evaluation: `lic eval`") == "evaluation-lic-eval"
    assert slug("ML-CLIPSim (exact definition; tests pin it)") == (
        "ml-clipsim-exact-definition-tests-pin-it"
    )


def test_link_checker_finds_a_broken_link(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n\n## Part two\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#part-two) [bad](a.md#part-three) [gone](c.md) `[code](x.md)`\n"
        "```\n[fenced](y.md)\n```\n[web](https://example.org/z.md)\n"
    )
    assert broken_links(page) == [
        "b.md: a.md#part-three: no heading with that anchor",
        "b.md: c.md: no such file",
    ]


def test_every_relative_link_resolves():
    assert len(PAGES) > 5
    broken = [line for page in PAGES for line in broken_links(page)]
    assert not broken, "\n".join(broken)


def test_every_docs_page_is_on_the_readme_map():
    readme_links = {target.partition("#")[0] for target in links(ROOT / "README.md")}
    missing = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme_links]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_ci_runs_the_readme_setup_commands_as_written():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"^```bash\n(.*?)^```", readme, re.S | re.M)
    assert first_block is not None
    setup = first_block.group(1).splitlines()
    assert setup == ['pip install -e ".[dev]"', "python -m pytest -q"]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert [line for line in ci_lines if line in setup] == setup
