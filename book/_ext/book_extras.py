"""Two small additions to the book's Sphinx build (``_config.yml``, ``sphinx: local_extensions``).

* Bibliography labels in author-year form ("Hagemann et al., 2024"), matching the
  ``author_year`` citations of the text: the pybtex formatting style ``authoryear`` is the plain
  (unsrt) style with the label style below and the entries sorted by author, year and title.
* nbval's ``# NBVAL_...`` comments (which mark the cells the smoke test compares with the committed
  outputs) are dropped from the code the book shows; the notebooks keep them.
"""

from __future__ import annotations

import re
from collections import Counter

from docutils import nodes
from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle

_MARKER_LINE = re.compile(r"^[ \t]*#[ \t]*NBVAL_[A-Z_]+[ \t]*$\n?", re.MULTILINE)
_MARKER_TAIL = re.compile(r"[ \t]*#[ \t]*NBVAL_[A-Z_]+[ \t]*$", re.MULTILINE)


def _surname(person) -> str:
    parts = list(person.rich_prelast_names) + list(person.rich_last_names)
    return " ".join(Text(part).render_as("text") for part in parts)


def author_year(entry) -> str:
    """``Surname, YEAR``, ``A and B, YEAR`` or ``A et al., YEAR``, as the text cites the entry."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_surname(p) for p in persons]
    if not names:
        who = Text.from_latex(entry.fields.get("title", entry.key)).render_as("text")
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels ``Hagemann et al., 2024``; equal labels get the suffixes a, b, ..."""

    def format_labels(self, sorted_entries):
        labels = [author_year(entry) for entry in sorted_entries]
        count, seen = Counter(labels), Counter()
        for label in labels:
            if count[label] > 1:
                seen[label] += 1
                label += "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            yield label


class AuthorYearStyle(UnsrtStyle):
    default_label_style = "authoryear"
    default_sorting_style = "author_year_title"


register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabelStyle)
register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def drop_nbval_markers(app, doctree) -> None:
    """Remove ``# NBVAL_...`` comment lines (and trailing comments) from the notebooks' code cells."""
    for block in doctree.findall(nodes.literal_block):
        parent = block.parent
        if not (isinstance(parent, nodes.container) and "cell_input" in parent.get("classes", [])):
            continue
        text = block.astext()
        if "NBVAL_" not in text:
            continue
        text = _MARKER_TAIL.sub("", _MARKER_LINE.sub("", text))
        block.children = [nodes.Text(text)]
        block.rawsource = text


def setup(app):
    app.connect("doctree-read", drop_nbval_markers)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
