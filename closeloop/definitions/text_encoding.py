"""Telling which encoding bytes that are not UTF-8 are in, and saying so the same way everywhere.

Used for project files (YAML) and imported files alike. The standard library cannot detect an
encoding in general; a few clear signs cover the files people actually have: UTF-16 (a byte-order
mark, or NUL bytes between characters), Windows-1252 (curly quotes and the euro sign use bytes
0x80-0x9F, which are control characters in Latin-1), and Latin-1 otherwise.
"""

from __future__ import annotations

import codecs


def guess_encoding(data: bytes) -> str:
    """The encoding bytes that are not UTF-8 most likely are in.

    >>> guess_encoding("Société".encode("latin-1"))
    'latin-1'
    >>> guess_encoding("“quoted”".encode("cp1252"))
    'cp1252'
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (
        len(data) >= 4 and data.count(b"\x00") * 4 >= len(data)
    ):
        return "utf-16"
    if any(0x80 <= byte <= 0x9F for byte in data):
        try:
            data.decode("cp1252")
        except UnicodeDecodeError:
            return "latin-1"
        return "cp1252"
    return "latin-1"


def not_utf8_message(encoding: str, guess: str, *, repair: str = "") -> str:
    """ "not UTF-8 (looks like latin-1); re-export as UTF-8 or pass --encoding latin-1".

    ``encoding`` is the one the bytes were read as; ``repair`` replaces the advice after the
    semicolon (a project file is re-saved, not re-imported).
    """
    utf8 = codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")
    name = "UTF-8" if utf8 else encoding
    advice = repair or (
        f"re-export as UTF-8 or pass --encoding {guess}" if utf8 else f"pass --encoding {guess}"
    )
    return f"not {name} (looks like {guess}); {advice}"
