"""C-comment, C-code and man (roff) extraction on small hand-written inputs (exact text)."""

from __future__ import annotations

import gzip

from direct_opt.lm.text import EXTRACTORS, read_source, walk_files

HEADER = '''/* Copyright (C) 2024 Example Project.
   This file is part of the example library. */
#ifndef EX_H
#define EX_H 1

/**
 * Compute the sum of two integers.
 *
 * Returns the sum.
 ***************/
int add(int a, int b);  /* short */

// Line comments that run over
// two consecutive lines.
static const char *s = "/* not a comment */";

#endif
'''

PAGE = r'''.\" a comment line that is dropped
.de XX
.ft B
..
.TH DEMO 1 "2024" "demo 1.0" "User Commands"
.SH NAME
demo \- show how \fBroff\fR becomes text
.SH DESCRIPTION
.B demo
reads \fIfiles\fP and writes\(emquickly\(emtheir \*(lqtext\*(rq.
.PP
See
.BR ls (1)
and the file \e tmp. \" inline comment
.TP
.B \-v
be verbose about what is done
.nf
line one
  line two
.fi
'''


def extract(kind: str, text: str) -> list[str]:
    return EXTRACTORS[kind](text, None, 10_000, 0.0)


def test_c_comments_strip_markers_and_decoration() -> None:
    assert extract("c-comments", HEADER) == [
        "Copyright (C) 2024 Example Project.\nThis file is part of the example library.",
        "Compute the sum of two integers.\n\nReturns the sum.",
        "Line comments that run over\ntwo consecutive lines.",
    ]  # "short" is under MIN_SEGMENT_CHARS; the string literal is no comment


def test_c_code_has_no_comments_and_splits_at_blank_lines() -> None:
    assert extract("c-code", HEADER) == [
        "#ifndef EX_H\n#define EX_H 1",
        "int add(int a, int b);",
        'static const char *s = "/* not a comment */";',
    ]  # "#endif" is under MIN_SEGMENT_CHARS


def test_man_roff_to_paragraphs() -> None:
    assert extract("man", PAGE) == [
        "NAME\ndemo - show how roff becomes text",
        "DESCRIPTION\ndemo reads files and writes--quickly--their text.",
        "See ls(1) and the file \\ tmp.",
        "-v\nbe verbose about what is done\nline one\n  line two",
    ]


def test_segments_rotate_with_start() -> None:
    segs = extract("man", PAGE)
    assert EXTRACTORS["man"](PAGE, None, 10_000, 0.5) == segs[2:] + segs[:2]


def test_walker_suffixes_and_gzip_reading(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "a.h").write_text(HEADER)
    (tmp_path / "sub" / "b.h").write_text(HEADER)
    (tmp_path / "tests" / "c.h").write_text(HEADER)  # a skipped directory
    (tmp_path / "d.py").write_text("x = 1\n")
    (tmp_path / "demo.1.gz").write_bytes(gzip.compress(PAGE.encode()))
    (tmp_path / "broken.1.gz").write_bytes(b"not gzip")
    assert walk_files(tmp_path, suffixes=(".h",)) == [tmp_path / "a.h", tmp_path / "sub" / "b.h"]
    assert walk_files(tmp_path) == [tmp_path / "d.py"]  # .py by default
    assert walk_files(tmp_path, suffixes=(".gz",), recursive=False) == [tmp_path / "broken.1.gz", tmp_path / "demo.1.gz"]
    assert read_source(tmp_path / "demo.1.gz") == PAGE
    assert read_source(tmp_path / "broken.1.gz") == ""  # unreadable: no text, no error
