"""Text corpora on disk: which files make up a corpus, checking them, and reading them in chunks.

Nothing here reads a whole file at once, so a corpus larger than memory is fine: files are hashed
and checked (UTF-8, no NUL bytes, not empty) in one streaming pass, then read chunk by chunk.
"""

import codecs
import hashlib
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

from tinygpt.data.tokenizers import safe_cut
from tinygpt.errors import UserError

CHUNK_BYTES = 1 << 20  # read 1 MiB at a time


def embedded_corpus_path() -> Path:
    """data/tiny_corpus.txt: shipped inside the wheel as tinygpt/corpus, or at the checkout's top."""
    packaged = resources.files("tinygpt").joinpath("corpus", "tiny_corpus.txt")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "data" / "tiny_corpus.txt"


def find_documents(path: str | Path, key: str) -> list[Path]:
    """A file is one document; a folder is every ``*.txt`` under it, in sorted order.

    ``key`` names the config key the path came from (``data.path``), for the error messages.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{key} {path} does not exist; point {key} at a UTF-8 text file or a folder of them")
    if path.is_dir():
        docs = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not docs:
            raise UserError(f"{key} {path} is a folder with no .txt files under it")
        return docs
    if not path.is_file():
        raise UserError(f"{key} {path} is not a regular file; point {key} at a UTF-8 text file")
    return [path]


def check_documents(docs: list[Path], key: str, progress: Callable[[int], None]) -> str:
    """Refuse anything that is not UTF-8 text, naming the file and byte offset; return the sha256 of
    the documents' contents (and where each one ends). ``progress`` is told the bytes read."""
    corpus_hash = hashlib.sha256()
    has_text = False
    for doc in docs:
        digest, doc_has_text = _check_file(doc, key, progress)
        corpus_hash.update(f"{digest}\n".encode())
        has_text = has_text or doc_has_text
    if not has_text:
        where = docs[0] if len(docs) == 1 else f"{docs[0].parent} ({len(docs)} .txt files)"
        raise UserError(f"{key} {where} is empty; it needs text to train on")
    return corpus_hash.hexdigest()


def _check_file(path: Path, key: str, progress: Callable[[int], None]) -> tuple[str, bool]:
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, has_text = 0, False  # offset: bytes of the file before the current block
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            nul = block.find(b"\0")
            if nul >= 0:
                raise UserError(
                    f"{key} {path} has a NUL byte at byte offset {offset + nul}: it looks like a binary "
                    "file, not text; point it at a UTF-8 text file"
                )
            pending = len(decoder.getstate()[0])  # bytes of a character split across blocks
            try:
                text = decoder.decode(block)
            except UnicodeDecodeError as exc:
                raise _not_utf8(path, key, offset - pending + exc.start) from exc
            has_text = has_text or bool(text.strip())
            digest.update(block)
            offset += len(block)
            progress(len(block))
    pending = len(decoder.getstate()[0])
    if pending:  # the file ends in the middle of a character
        raise _not_utf8(path, key, offset - pending)
    return digest.hexdigest(), has_text


def _not_utf8(path: Path, key: str, offset: int) -> UserError:
    return UserError(
        f"{key} {path} is not valid UTF-8 (byte offset {offset}); convert it to UTF-8 first, "
        f"e.g. iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8.txt"
    )


def read_chunks(path: Path) -> Iterator[str]:
    """The text of a checked file, about CHUNK_BYTES at a time, each chunk ending where BPE would
    split anyway (tokenizers.safe_cut), so encoding chunk by chunk equals encoding the whole."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    rest = ""
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            text = rest + decoder.decode(block)
            cut = safe_cut(text, 0, len(text))
            if cut == 0 and len(text) > 4 * CHUNK_BYTES:
                cut = len(text)  # one enormous line: cut anyway rather than hold it all
            if cut:
                yield text[:cut]
            rest = text[cut:]
    rest += decoder.decode(b"", final=True)
    if rest:
        yield rest
