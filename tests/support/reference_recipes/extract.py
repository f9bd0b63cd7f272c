"""Extract every ```yaml block of the reference documents into this folder, verbatim.

    python tests/support/reference_recipes/extract.py SEEDS_DIR

The reference documents (the original product's, superseded) are not part of the repository;
the blocks are, so tests/unit/test_reference_recipes.py runs anywhere. Each block becomes
`<document>.<heading>.yaml` (byte for byte the block's lines) and the script prints the source
of each; with `--check` it only compares and exits 1 when a committed file differs.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
# the documents' first-line titles, shortened to a file name prefix
DOCUMENTS = {"Developer Guide": "developer-guide",
             "Extending the Framework": "extending-the-framework",
             "HPC Benchmarking Orchestrator - API Documentation": "orchestrator-api",
             "HPC Benchmark Toolkit": "toolkit"}


def slug(text: str) -> str:
    """`6.1 Recipe Structure` -> `6.1-recipe-structure`; dots only between digits."""
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text.lower())
    return re.sub(r"[^a-z0-9.]+", "-", text).strip("-")


def blocks(seed: Path):
    """(title, heading, first line number, text) of each ```yaml block of one document; a
    heading without a section number is prefixed with its numbered parent's number."""
    lines = seed.read_text().splitlines(keepends=True)
    title, index = lines[0].lstrip("# ").strip(), 0
    headings: dict[int, str] = {}
    heading = ""
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            headings = {depth: text for depth, text in headings.items() if depth < level}
            headings[level] = heading = line.lstrip("#").strip()
            numbered = [text.split()[0] for depth, text in sorted(headings.items())
                        if re.match(r"\d+\.\d", text)]
            if numbered and not re.match(r"\d", heading):
                heading = f"{numbered[-1]} {heading}"
        if line.strip() == "```yaml":
            end = index + 1
            while lines[end].strip() != "```":
                end += 1
            yield title, heading, index + 2, "".join(lines[index + 1:end])
            index = end
        index += 1


def main(argv: list[str]) -> int:
    check = "--check" in argv
    seeds = Path([arg for arg in argv if arg != "--check"][0])
    differ = 0
    for seed in sorted(seeds.glob("*.txt")):
        for title, heading, line, text in blocks(seed):
            name = f"{DOCUMENTS[title]}.{slug(heading)}.yaml"
            target = HERE / name
            if check:
                if not target.exists() or target.read_text() != text:
                    print(f"differs: {name}")
                    differ += 1
                continue
            target.write_text(text)
            print(f"{name}: {title!r}, heading {heading!r}, line {line}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
