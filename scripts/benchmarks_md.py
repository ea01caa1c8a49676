"""Writes one measured section of BENCHMARKS.md: the text between `<!-- NAME:start -->` and
`<!-- NAME:end -->` is replaced, or appended under `heading` when the markers are not there yet.
Shared by the benchmark scripts."""
import pathlib
import re


def write_section(name: str, heading: str, table: str, path: str = "BENCHMARKS.md") -> None:
    p = pathlib.Path(path)
    text = p.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: table, text, flags=re.S)
    else:
        text += f"\n{heading}\n\n{table}\n"
    p.write_text(text)
