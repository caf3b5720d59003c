"""The c-headers corpus (C headers pool, man-page validation grouped by section) and the
Python corpora's bit-identity across the domain-spec refactor."""

from __future__ import annotations

import gzip
import hashlib
import os
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from direct_opt.errors import InvalidParameterError
from direct_opt.lm import c_headers_corpus, stdlib_corpus
from direct_opt.lm.corpus import header_area

SIZES = dict(n_pool=24, n_val=8, n_test=8, n_pretrain=12, seq_len=32)
SECTIONS = ("man1", "man3", "man8")


def _header(area: str, i: int) -> str:
    return (f"/* The {area} header number {i}: it declares the {area}_{i} functions.\n"
            f" * Each header carries its own comment text ({area} {i}). */\n"
            f"#ifndef {area.upper()}_{i}_H\n#define {area.upper()}_{i}_H 1\n\n"
            f"// helper {i} of the {area} area, documented\n"
            f"extern int {area}_{i}_open(const char *path, int flags_{i});\n"
            f"extern long {area}_{i}_read(int fd, void *buf, unsigned long n_{i});\n\n#endif\n")


def _page(section: str, i: int) -> str:
    return (f'.TH PAGE{i} {section[3:]} "2024" "fake" "Fake Manual"\n.SH NAME\npage{i} \\- page {i} of {section}\n'
            f".SH DESCRIPTION\n.B page{i}\ndescribes item {i} of section {section} in a few plain words.\n.PP\n"
            f"A second paragraph of page {i} in {section}, with \\fBbold\\fR text.\n")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("c_headers")
    inc, man = root / "include", root / "man"
    for area, sub in (("libc", ""), ("sys", "sys"), ("linux", "linux"), ("gfx", "X11"), ("misc", "foo"),
                      ("cxx", "c++"), ("node", "node"), ("arch", "x86_64-linux-gnu/asm")):
        d = inc / sub
        d.mkdir(parents=True, exist_ok=True)
        for i in range(6):
            (d / f"{area}{i}.h").write_text(_header(area, i))
    os.symlink(inc / "libc0.h", inc / "alias.h")  # a link repeats a file: skipped
    for sec in SECTIONS:
        (man / sec).mkdir(parents=True)
        for i in range(12):
            (man / sec / f"page{i}.{sec[3:]}.gz").write_bytes(gzip.compress(_page(sec, i).encode()))
    (man / "de" / "man1").mkdir(parents=True)  # a language subdirectory: not read
    (man / "de" / "man1" / "seite.1.gz").write_bytes(gzip.compress(_page("man1", 99).encode()))
    return inc, man


@pytest.fixture(scope="module")
def corpus(dirs):
    inc, man = dirs
    return c_headers_corpus(seed=0, include_dir=inc, man_dir=man, **SIZES)


def _rows(t: torch.Tensor) -> set[bytes]:
    return {bytes(r.tolist()) for r in t}


def test_domains_areas_and_pool_without_man(corpus) -> None:
    info = corpus.info
    assert info["domains"] == ["comments", "code:libc", "code:linux", "code:graphics", "code:other", "man"]
    assert info["pool_domains"] == ["comments", "code:libc", "code:linux", "code:graphics", "code:other"]
    assert corpus.target_domain == "man" and not corpus.group_mask("clean:man").any()
    # libc = root + sys/; linux = linux/ + the multiarch asm/; graphics = X11/; other = foo/; c++/, node/, links skipped
    assert info["files_available"] == {"comments": 36, "code:libc": 12, "code:linux": 12, "code:graphics": 6,
                                       "code:other": 6, "man": 36}
    ids = " ".join(corpus.pool_ids.tolist())
    assert "c++/" not in ids and "node/" not in ids and "alias.h" not in ids


def test_split_disjointness(corpus) -> None:
    test = _rows(corpus.test)
    assert not test & _rows(corpus.pool) and not test & _rows(corpus.val) and not test & _rows(corpus.pretrain)
    assert not set(corpus.info["test_sources"]) & set(corpus.info["val_sources"])
    assert all(s.split("/")[0] in SECTIONS for s in corpus.info["test_sources"] + corpus.info["val_sources"])


def test_val_groups_are_man_sections(corpus) -> None:
    g = corpus.val_groups
    assert g is not None and g.shape == (8,) and g.dtype.kind == "U"
    assert set(g.tolist()) == {s.split("/")[0] for s in corpus.info["val_sources"]}
    assert corpus.info["val_group_counts"] == {s: int((g == s).sum()) for s in sorted(set(g.tolist()))}
    assert stdlib_corpus(seed=0, n_pool=8, n_val=4, n_test=4, n_pretrain=0).val_groups is None


def test_other_target_has_no_groups(dirs) -> None:
    c = c_headers_corpus(seed=0, include_dir=dirs[0], man_dir=dirs[1], target_domain="comments", **SIZES)
    assert c.val_groups is None and c.target_domain == "comments"


def test_deterministic_given_seed(dirs, corpus) -> None:
    again = c_headers_corpus(seed=0, include_dir=dirs[0], man_dir=dirs[1], **SIZES)
    for name in ("pool", "val", "test", "pretrain"):
        assert torch.equal(getattr(corpus, name), getattr(again, name)), name
    assert (corpus.pool_ids == again.pool_ids).all() and (corpus.val_groups == again.val_groups).all()
    other = c_headers_corpus(seed=1, include_dir=dirs[0], man_dir=dirs[1], **SIZES)
    assert not torch.equal(corpus.test, other.test)


def test_missing_or_empty_dirs_name_the_directory_and_option(dirs, tmp_path) -> None:
    inc, man = dirs
    with pytest.raises(InvalidParameterError, match=r"include_dir=.*nowhere.*is not a directory"):
        c_headers_corpus(include_dir=tmp_path / "nowhere", man_dir=man, **SIZES)
    with pytest.raises(InvalidParameterError, match=r"man_dir=.*no gzipped manual pages"):
        c_headers_corpus(include_dir=inc, man_dir=tmp_path, **SIZES)
    with pytest.raises(InvalidParameterError, match=r"include_dir=.*no usable \.h files"):
        c_headers_corpus(include_dir=tmp_path, man_dir=man, **SIZES)
    with pytest.raises(InvalidParameterError, match=r"ran out of text.*man_dir="):
        c_headers_corpus(include_dir=inc, man_dir=man, **{**SIZES, "n_test": 400})


def test_header_area_rule() -> None:
    assert [header_area(Path(p)) for p in ("stdio.h", "sys/types.h", "x86_64-linux-gnu/bits/types.h",
                                           "x86_64-linux-gnu/asm/unistd.h", "linux/fs.h", "GL/gl.h",
                                           "openssl/ssl.h", "c++/12/cstdio.h", "llvm-14/llvm/IR.h", "node/v8.h")] \
        == ["libc", "libc", "libc", "linux", "linux", "graphics", "other", None, None, None]


@pytest.mark.skipif(not (Path("/usr/include").is_dir() and Path("/usr/share/man/man1").is_dir()),
                    reason="needs /usr/include and /usr/share/man (the default directories) on this machine")
def test_real_system_directories_quick() -> None:
    c = c_headers_corpus(seed=0, quick=True)
    assert c.pool.shape[0] == 256 and c.val_groups.shape == (32,)
    assert all(g.startswith("man") for g in c.val_groups.tolist())


def _fingerprint(c) -> str:
    """sha256 over the shapes and bytes of pool/val/test/pretrain, then the pool groups and ids."""
    h = hashlib.sha256()
    for t in (c.pool, c.val, c.test, c.pretrain):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().astype(np.uint8).tobytes())
    h.update("\n".join(c.pool_groups.tolist()).encode())
    h.update("\n".join(c.pool_ids.tolist()).encode())
    return h.hexdigest()


#: made with _fingerprint(stdlib_corpus(seed=0, quick=True)) on main at 82452d1 (before build_corpus took a
#: domain spec), Python 3.11.7 (pyenv build, stdlib in ~/.pyenv/versions/3.11.7/lib/python3.11); the stdlib
#: text differs between Python versions
STDLIB_QUICK_SHA = "e6f2c7fdc4545f4046d0c31270c6673dfd05379998828ebe317c4f334e7ab06f"


@pytest.mark.skipif(platform.python_version() != "3.11.7",
                    reason="the pinned fingerprint was made from the stdlib sources of Python 3.11.7")
def test_stdlib_quick_corpus_unchanged_by_the_domain_spec_refactor() -> None:
    assert _fingerprint(stdlib_corpus(seed=0, quick=True)) == STDLIB_QUICK_SHA
