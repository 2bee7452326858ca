"""The documents of a corpus to prepare: which files make it up, and reading each kind of file as a
stream of text pieces.

Input is a file, a folder (every .txt / .jsonl / .json / .parquet file under it, sorted by path) or a
glob. A file's kind is chosen by its suffix:

- ``.txt``: ``documents=file`` makes the whole file one document; ``blank_line`` one document per
  paragraph (lines up to a blank or whitespace-only line; the paragraph's lines joined by their own
  line endings, the last one dropped); ``line`` one document per line holding more than whitespace
  (its line ending dropped). Line endings are ``\\n`` or ``\\r\\n``.
- ``.jsonl`` / ``.json``: one JSON object per line, the document in its ``text_key`` field (a
  string); blank lines are skipped.
- ``.parquet``: the ``text_key`` column (strings), one document per row. Needs pyarrow.

A document of zero characters is skipped. Every piece says whether it starts a document; a long
document comes as several pieces, cut where byte-level BPE splits anyway (tokenizers.safe_cut) when
``cuttable``, so encoding it piece by piece gives the ids of encoding it whole. Everything read is
untrusted: a problem is a UserError naming the file and the line, record or byte offset.
"""

import codecs
import glob
import hashlib
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinygpt.data.tokenizers import safe_cut
from tinygpt.errors import UserError

SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")
DOCUMENT_MODES = ("file", "blank_line", "line")
BLOCK_BYTES = 1 << 20  # .txt files are read 1 MiB at a time
PARQUET_ROWS = 1024  # rows converted to Python strings at a time
PARAGRAPH_BREAK = re.compile(r"\n(?:[^\S\n]*\n)+")  # a line end, then blank or whitespace-only lines
PARQUET_NEEDED = "reading parquet needs pyarrow: pip install -e '.[parquet]'"


@dataclass(frozen=True)
class Piece:
    """Part of a document, in input order: ``starts`` says it is a document's first part."""

    text: str
    starts: bool
    read: int  # bytes of the input file consumed since the previous piece (for the progress bar)


def find_sources(spec: str) -> list[Path]:
    """The files ``input`` names, in the order they are read; a UserError if it names none."""
    path = Path(spec).expanduser()
    if any(c in spec for c in "*?["):
        matched = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        files = [p for p in matched if p.is_file() and p.suffix in SUFFIXES]
        if not files:
            raise UserError(
                f"input {spec} matches no {' / '.join(SUFFIXES)} file; check the pattern (quote it so "
                "the shell leaves it to TinyGPT)"
            )
        return files
    if not path.exists():
        raise UserError(
            f"input {path} does not exist; point input at a text, JSONL or parquet file or folder"
        )
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise UserError(f"input {path} is a folder with no {' / '.join(SUFFIXES)} files under it")
        return files
    if path.suffix not in SUFFIXES:
        raise UserError(f"input {path} is not a {' / '.join(SUFFIXES)} file; name its kind by its suffix")
    return [path]


def check_readers(files: list[Path]) -> None:
    """Refuse parquet input up front when pyarrow is not installed."""
    if any(f.suffix == ".parquet" for f in files):
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError as exc:
            raise UserError(PARQUET_NEEDED) from exc


def describe_source(path: Path) -> dict[str, Any]:
    """A source file as meta.json lists it: its path, size and sha256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK_BYTES):
            digest.update(block)
    return {"path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def read_pieces(files: list[Path], text_key: str, documents: str, cuttable: bool) -> Iterator[Piece]:
    """Every document of every file, as pieces in input order."""
    for path in files:
        try:
            if path.suffix == ".txt":
                yield from _text_pieces(path, documents, cuttable)
            elif path.suffix == ".parquet":
                yield from _parquet_pieces(path, text_key)
            else:
                yield from _jsonl_pieces(path, text_key)
        except OSError as exc:
            raise UserError(f"cannot read input {path} ({exc.strerror or exc})") from exc


def _text_pieces(path: Path, documents: str, cuttable: bool) -> Iterator[Piece]:
    if documents == "file":
        yield from _file_document(path, cuttable)
    elif documents == "blank_line":
        yield from _paragraphs(path)
    else:
        unread = 0  # bytes read that no piece has reported yet
        for _, lines, read in _line_blocks(path):
            unread += read
            for line in lines:
                if line and not line.isspace():
                    yield Piece(line.removesuffix("\r"), True, unread)
                    unread = 0
        if unread:
            yield Piece("", False, unread)


def _paragraphs(path: Path) -> Iterator[Piece]:
    """blank_line documents, found by a regular expression over each decoded block (not line by line:
    a corpus of short paragraphs is read at block speed). What follows the last separator of a block
    is kept, separator included, until the next block says where it ends."""
    carry, unread, start = "\n", 0, 1  # a line end before the first line: blank lines there separate nothing
    for text, read in itertools.chain(_decoded_blocks(path), [("\n\n", 0)]):  # the end completes the last
        text, unread, kept = carry + text, unread + read, None
        for match in PARAGRAPH_BREAK.finditer(text):
            if match.start() > start:
                yield Piece(text[start : match.start()].removesuffix("\r"), True, unread)
                unread = 0
            start, kept = match.end(), match.start()
        carry = text if kept is None else text[kept:]
        start = start if kept is None else start - kept
    if unread:
        yield Piece("", False, unread)


def _line_blocks(path: Path) -> Iterator[tuple[int, list[str], int]]:
    """The file's lines, without their ``\\n``, a block at a time: (the first one's number, the lines,
    bytes read). Decoded per block, not per line: a corpus of short lines is read at block speed."""
    rest, number = "", 1
    for text, read in _decoded_blocks(path):
        lines = (rest + text).split("\n")
        rest = lines.pop()  # the start of a line that goes on in the next block
        yield number, lines, read
        number += len(lines)
    if rest:
        yield number, [rest], 0


def _decoded_blocks(path: Path) -> Iterator[tuple[str, int]]:
    """The file's text, a block at a time, with the bytes read; invalid UTF-8 is refused with the line
    and byte offset."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, newlines = 0, 0  # bytes and line ends before the block
    with open(path, "rb") as f:
        while block := f.read(BLOCK_BYTES):
            pending = decoder.getstate()[0]  # bytes of a character split across blocks
            try:
                text = decoder.decode(block)
            except UnicodeDecodeError as exc:
                line = newlines + (pending + block)[: exc.start].count(b"\n") + 1
                raise _not_utf8(f"{path}:{line}", f"byte offset {offset - len(pending) + exc.start}") from exc
            offset, newlines = offset + len(block), newlines + block.count(b"\n")
            yield text, len(block)
    if decoder.getstate()[0]:
        end = offset - len(decoder.getstate()[0])
        raise _not_utf8(f"{path}:{newlines + 1}", f"byte offset {end}: it ends mid-character")


def _file_document(path: Path, cuttable: bool) -> Iterator[Piece]:
    """The whole file as one document: 1 MiB blocks cut at safe places (or held whole if not
    ``cuttable``), UTF-8 checked with the byte offset of a problem."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    rest, offset, read, first = "", 0, 0, True
    with open(path, "rb") as f:
        while block := f.read(BLOCK_BYTES):
            pending = len(decoder.getstate()[0])  # bytes of a character split across blocks
            try:
                text = rest + decoder.decode(block)
            except UnicodeDecodeError as exc:
                raise _not_utf8(str(path), f"byte offset {offset - pending + exc.start}") from exc
            offset, read = offset + len(block), read + len(block)
            cut = safe_cut(text, 0, len(text)) if cuttable else 0
            if cut == 0 and cuttable and len(text) > 4 * BLOCK_BYTES:
                cut = len(text)  # one enormous line: BPE would see it whole, but memory comes first
            if cut:
                yield Piece(text[:cut], first, read)
                first, read = False, 0
            rest = text[cut:]
    if decoder.getstate()[0]:
        raise _not_utf8(
            str(path), f"byte offset {offset - len(decoder.getstate()[0])} (the file ends mid-character)"
        )
    if rest or read:
        yield Piece(rest, first and bool(rest), read)


def _jsonl_pieces(path: Path, text_key: str) -> Iterator[Piece]:
    unread = 0
    for first, lines, read in _line_blocks(path):
        unread += read
        for number, line in enumerate(lines, first):
            if not line or line.isspace():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as exc:
                raise UserError(
                    f"{path}:{number} is not a JSON line ({exc}); JSONL holds one object per line"
                ) from exc
            text = _field(record, text_key, f"{path}:{number}", "text_key")
            yield Piece(text, bool(text), unread)
            unread = 0
    if unread:
        yield Piece("", False, unread)


def _field(record: Any, text_key: str, where: str, key: str) -> str:
    if not isinstance(record, dict) or text_key not in record:
        fields = f" (it has {', '.join(map(repr, list(record)[:8]))})" if isinstance(record, dict) else ""
        raise UserError(
            f'{where} has no "{text_key}" field{fields}; set {key}= to the field holding the text'
        )
    text = record[text_key]
    if not isinstance(text, str):
        raise UserError(
            f'{where}: "{text_key}" is {type(text).__name__}, not a string; set {key}= to a text field'
        )
    return text


def _parquet_pieces(path: Path, text_key: str) -> Iterator[Piece]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise UserError(PARQUET_NEEDED) from exc
    try:
        table = pq.ParquetFile(path)
    except (pa.ArrowException, ValueError) as exc:
        raise UserError(f"input {path} is not a readable parquet file ({exc})") from exc
    names = table.schema_arrow.names
    if text_key not in names:
        raise UserError(
            f'input {path} has no column "{text_key}" (its columns: {", ".join(names)}); set text_key= to '
            "the column holding the text"
        )
    share, row = path.stat().st_size // max(table.metadata.num_rows, 1), 0
    try:
        for batch in table.iter_batches(batch_size=PARQUET_ROWS, columns=[text_key]):
            for value in batch.column(0).to_pylist():
                row += 1
                if not isinstance(value, str):
                    raise UserError(
                        f'{path} row {row}: "{text_key}" is {type(value).__name__}, not a string; set '
                        "text_key= to a text column"
                    )
                yield Piece(value, bool(value), share)
    except pa.ArrowException as exc:
        raise UserError(f"cannot read parquet {path} ({exc})") from exc


def _not_utf8(where: str, position: str) -> UserError:
    return UserError(f"{where} is not valid UTF-8 ({position}); convert it to UTF-8 first (e.g. with iconv)")
