"""Corpus sources: documents as lists of sentences.

A corpus is an iterable of documents; a document is a list of sentences (str).
These sources are supported, chosen by a string spec (see `read_documents`):

* ``"embedded"`` (the default): English prose gathered offline from the
  docstrings of the Python standard library and of packages that the
  project's requirements install (`EMBEDDED_PACKAGES`: numpy, scipy, pandas,
  matplotlib, tensorflow, keras, official, absl, gin, ...). Source files are
  parsed with `ast` (nothing is imported), docstrings are cut into
  paragraphs, only prose-like paragraphs are kept (code, doctests, argument
  lists and tables are dropped), paragraphs are deduplicated across the whole
  corpus and split into sentences. One document is one source file. The order
  is deterministic (standard library, then packages in that order, files
  sorted by path). With the pinned requirements on Python 3.11 this gives
  5.7 MB of text: 4,915 documents, 70,116 sentences, 0.90M words (1.16M
  WordPiece tokens with the 8192-token vocab), gathered in ~25 s on 2 cores.
  The exact text depends on the installed versions, so it is written once to
  the data dir and every later step reads that file.
* ``"tweets"``: the 33,444 English tweets of the offline fine-tuning task's
  training split (data/tweets.py), without their labels, one document per
  tweet (0.53M words); the task's eval tweets are never read. Pretraining
  on the text a model is fine-tuned on is task-adaptive pretraining
  (Gururangan et al., "Don't Stop Pretraining", ACL 2020).
* offline sources joined by ``+``, e.g. ``"embedded+tweets"``: their
  documents one source after the other.
* a glob of local text files (``.gz`` allowed), one sentence per line and a
  blank line between documents, as written by Wikipedia extractors and by
  `write_documents`.
* ``"tfds:NAME"``: a TFDS text dataset already present in the TFDS data dir
  (``wikipedia/20230601.en``, ``c4/en``, ...). Each example's ``text`` feature
  is one document; its lines are paragraphs, split into sentences here.
"""

import ast
import gzip
import importlib.util
import io
import itertools
import os
import re
import sysconfig
from typing import Iterable, Iterator, List, Optional

import tensorflow as tf

from data import files

EMBEDDED = "embedded"
TWEETS = "tweets"
TFDS_PREFIX = "tfds:"

# Packages whose docstrings make up the embedded corpus, after the standard
# library. All are installed by requirements.txt (directly or as dependencies).
EMBEDDED_PACKAGES = (
    "numpy", "scipy", "pandas", "matplotlib", "tensorflow", "keras",
    "tf_keras", "official", "tensorflow_datasets", "tensorflow_text", "absl",
    "gin", "tensorboard", "tf_slim", "PIL", "fontTools", "werkzeug",
    "setuptools", "pip", "h5py", "dateutil", "pyparsing", "requests",
    "markdown", "oauth2client", "googleapiclient", "psutil", "kaggle",
    "sacrebleu", "rich", "etils")

# Folders whose docstrings are test scaffolding or vendored code, not prose.
_SKIPPED_DIRS = frozenset({
    "test", "tests", "testing", "__pycache__", "site-packages", "dist-packages",
    "idlelib", "lib2to3", "_vendor", "vendor", "testdata", "test_data",
    "turtledemo", "ensurepip"})

Document = List[str]

# Abbreviations after which a period does not end a sentence.
_ABBREVIATIONS = frozenset({
    "e.g.", "i.e.", "etc.", "vs.", "cf.", "mr.", "mrs.", "dr.", "no.", "fig.",
    "eq.", "approx.", "resp.", "al.", "sec.", "ch.", "vol.", "st.", "jr.",
    "inc.", "ltd.", "ver.", "p.", "pp."})
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(\s+)(?=[\"'(\[]?[A-Z0-9])")
_SECTION_HEADER = re.compile(
    r"^(args|arguments|parameters|params|returns?|yields?|raises|examples?|"
    r"attributes|usage|see also|references|notes?|warnings?|todo|methods|"
    r"properties|call arguments|input shape|output shape|other parameters)"
    r"\s*:?$", re.IGNORECASE)
_ARG_LINE = re.compile(r"^\*{0,2}[\w.]+\s*(\([^)]*\))?\s*:(\s|$)")
_ROLE = re.compile(r":[\w:]+:`~?([^`<]*?)(\s*<[^>]*>)?`")
_WORD = re.compile(r"^[A-Za-z][a-z]*(-[a-z]+)*[,.;:!?)\"']*$")


def split_sentences(paragraph: str) -> List[str]:
  """Splits one paragraph of prose into sentences.

  Args:
    paragraph: text on one line (whitespace is collapsed first).

  Returns:
    Sentences in order, each stripped; empty for a blank paragraph.
  """
  text = " ".join(paragraph.split())
  if not text:
    return []
  pieces, start = [], 0
  for match in _SENTENCE_END.finditer(text):
    pieces.append(text[start:match.start(1)])
    start = match.end(1)
  pieces.append(text[start:])
  sentences = []
  for piece in pieces:
    piece = piece.strip()
    if not piece:
      continue
    last_word = sentences[-1].rsplit(" ", 1)[-1].lower() if sentences else ""
    # A split after an abbreviation or a single initial ("J. Smith") is undone.
    if sentences and (last_word in _ABBREVIATIONS or
                      re.fullmatch(r"[a-z]\.", last_word)):
      sentences[-1] += " " + piece
    else:
      sentences.append(piece)
  return sentences


def _clean_markup(text: str) -> str:
  """Removes reST roles and inline-literal quotes, keeping the words."""
  text = _ROLE.sub(r"\1", text)
  text = text.replace("``", "").replace("`", "")
  text = re.sub(r"\*\*?([^*]+)\*\*?", r"\1", text)
  return " ".join(text.split())


def _is_prose(lines: List[str]) -> bool:
  """Whether a docstring paragraph reads as English prose."""
  first = lines[0]
  if first[:1].isspace() or first.lstrip().startswith((">>>", "...", "-", "*",
                                                       "|", "#", "+", "..")):
    return False
  if _SECTION_HEADER.match(first.strip()) or _ARG_LINE.match(first.strip()):
    return False
  if any(re.fullmatch(r"\s*[-=~^`*]{3,}\s*", line) for line in lines):
    return False  # An underlined heading or a table.
  text = _clean_markup(" ".join(lines))
  if not text.endswith((".", "!", "?")):
    return False
  words = text.split()
  if len(words) < 5 or not text[0].isupper():
    return False
  if any(ch in text for ch in "{}<>=\\@$") or "://" in text:
    return False
  plain = sum(1 for w in words if _WORD.match(w))
  return plain >= 0.8 * len(words)


def docstring_paragraphs(source: str) -> Iterator[str]:
  """Yields the prose paragraphs of all docstrings in a Python source file.

  Args:
    source: the text of a Python module.

  Yields:
    Paragraphs (markup removed, on one line) in source order; nothing when the
    source does not parse.
  """
  try:
    tree = ast.parse(source)
  except (SyntaxError, ValueError):
    return
  for node in ast.walk(tree):
    if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)):
      continue
    doc = ast.get_docstring(node, clean=True)
    if not doc:
      continue
    for block in re.split(r"\n\s*\n", doc):
      lines = [line.rstrip() for line in block.split("\n") if line.strip()]
      if lines and _is_prose(lines):
        yield _clean_markup(" ".join(lines))


def _package_dir(name: str) -> Optional[str]:
  """The folder of an installed top-level package, found without importing."""
  try:
    spec = importlib.util.find_spec(name)
  except (ImportError, ValueError):
    return None
  if spec is None or not spec.submodule_search_locations:
    return None
  return sorted(spec.submodule_search_locations)[0]


def embedded_source_files() -> List[str]:
  """The Python files the embedded corpus is drawn from, in corpus order."""
  roots = [sysconfig.get_paths()["stdlib"]]
  roots += [d for d in map(_package_dir, EMBEDDED_PACKAGES) if d]
  files = []
  for root in roots:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
      dirnames[:] = [d for d in dirnames if d not in _SKIPPED_DIRS]
      found += [os.path.join(dirpath, f) for f in filenames
                if f.endswith(".py") and not f.startswith("test_")
                and not f.endswith("_test.py")]
    files += sorted(found, key=lambda p: os.path.relpath(p, root))
  return files


def embedded_documents(files: Optional[Iterable[str]] = None
                      ) -> Iterator[Document]:
  """Yields the embedded corpus: one document per source file.

  Args:
    files: Python source files to read; `embedded_source_files()` by default.

  Yields:
    Documents (lists of sentences). A paragraph already seen anywhere earlier
    is skipped, so code copied between packages counts once.
  """
  seen = set()
  for path in embedded_source_files() if files is None else files:
    try:
      with open(path, encoding="utf-8") as f:
        source = f.read()
    except (OSError, UnicodeDecodeError):
      continue  # Unreadable library files are simply not part of the corpus.
    if '"""' not in source and "'''" not in source:
      continue
    document = []
    for paragraph in docstring_paragraphs(source):
      key = paragraph.lower()
      if key in seen:
        continue
      seen.add(key)
      document += split_sentences(paragraph)
    if document:
      yield document


def tweet_documents() -> Iterator[Document]:
  """Yields the training tweets, one document (of its sentences) per tweet."""
  from data import tweets  # pylint: disable=g-import-not-at-top
  for text in tweets.training_texts():
    document = split_sentences(text)
    if document:
      yield document


def offline_parts(corpus: str) -> Optional[List[str]]:
  """The offline sources of `corpus` (``"embedded+tweets"`` -> both), or
  None when it names something else (files, TFDS)."""
  parts = corpus.split("+")
  if all(p in (EMBEDDED, TWEETS) for p in parts):
    return parts
  return None


def _open_text(path: str):
  # Through tf.io.gfile, so a corpus may live on gs:// like a data dir.
  if path.endswith(".gz"):
    return io.TextIOWrapper(
        gzip.GzipFile(fileobj=tf.io.gfile.GFile(path, "rb")),
        encoding="utf-8", errors="strict")
  return tf.io.gfile.GFile(path, "r")  # Decodes UTF-8 strictly.


def text_files(pattern: str) -> List[str]:
  """The files matched by a glob, sorted; raises if there are none."""
  if files.is_local(pattern):
    pattern = os.path.expanduser(pattern)
  try:
    matches = tf.io.gfile.glob(pattern)
  except tf.errors.OpError:
    matches = []  # A glob below a missing folder matches nothing.
  paths = sorted(p for p in matches if not tf.io.gfile.isdir(p))
  if not paths:
    raise FileNotFoundError(f"corpus {pattern!r} matches no file")
  return paths


def text_file_documents(pattern: str) -> Iterator[Document]:
  """Yields documents from text files: a sentence a line, blank between docs.

  Args:
    pattern: a glob of text files; names ending in ``.gz`` are decompressed.

  Yields:
    Documents in file order (files sorted by name).

  Raises:
    FileNotFoundError: nothing matches `pattern`.
    ValueError: a file is not UTF-8 text or cannot be read.
  """
  for path in text_files(pattern):
    document = []
    try:
      with _open_text(path) as f:
        for line in f:
          line = line.strip()
          if line:
            document.append(line)
          elif document:
            yield document
            document = []
    except UnicodeDecodeError as e:
      raise ValueError(f"corpus file {path} is not UTF-8 text ({e.reason} at "
                       f"byte {e.start})") from None
    except (OSError, EOFError, tf.errors.OpError) as e:
      raise ValueError(f"corpus file {path} cannot be read: {e}") from None
    if document:
      yield document


def tfds_documents(name: str, *, data_dir: Optional[str] = None,
                   split: str = "train") -> Iterator[Document]:
  """Yields documents from a TFDS text dataset that is already prepared.

  Args:
    name: the TFDS name, e.g. ``wikipedia/20230601.en``.
    data_dir: the TFDS data dir holding it (TFDS's default when None).
    split: the TFDS split to read.

  Yields:
    One document per example: its ``text`` feature, each line a paragraph.

  Raises:
    FileNotFoundError: the dataset is unknown or not prepared in `data_dir`.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except AttributeError as e:
    # TFDS 4.9.9 restores dataset info with `FieldDescriptor.label`, which
    # protobuf 7 removed.
    raise ValueError(f"TFDS cannot read the info of {name!r} ({e}); TFDS "
                     "4.9.9 needs protobuf < 7") from None
  except Exception as e:  # pylint: disable=broad-except
    raise FileNotFoundError(f"TFDS dataset {name!r} is unknown: "
                            f"{str(e).splitlines()[0]}") from None
  if "text" not in builder.info.features:
    raise ValueError(f"TFDS dataset {name!r} has no 'text' feature")
  try:
    ds = builder.as_dataset(split=split, shuffle_files=False)
  except AssertionError:  # TFDS's way of saying the data is not there.
    raise FileNotFoundError(
        f"TFDS dataset {name!r} is not prepared in {builder.data_dir!r}; "
        f"run `tfds build {name}` first (this project does not download)"
    ) from None
  for example in tfds.as_numpy(ds):
    text = example["text"]
    try:
      text = text.decode("utf-8")
    except UnicodeDecodeError:
      continue
    document = []
    for paragraph in text.split("\n"):
      document += split_sentences(paragraph)
    if document:
      yield document


def read_documents(corpus: str, *, tfds_data_dir: Optional[str] = None
                  ) -> Iterator[Document]:
  """Yields the documents of a corpus given by its spec string.

  Args:
    corpus: ``"embedded"``, ``"tweets"``, both joined by ``+``, a glob of
      text files, or ``"tfds:NAME"``.
    tfds_data_dir: where TFDS datasets live, for ``tfds:`` corpora.

  Yields:
    Documents, lists of sentences.
  """
  parts = offline_parts(corpus)
  if parts:
    sources = {EMBEDDED: embedded_documents, TWEETS: tweet_documents}
    return itertools.chain.from_iterable(sources[p]() for p in parts)
  if corpus.startswith(TFDS_PREFIX):
    return tfds_documents(corpus[len(TFDS_PREFIX):], data_dir=tfds_data_dir)
  return text_file_documents(corpus)


def write_documents(documents: Iterable[Document], path: str) -> None:
  """Writes documents in the text-file corpus format, atomically.

  Args:
    documents: lists of sentences.
    path: the file to write; it appears only once complete.
  """
  with files.atomic_path(path) as tmp_path:
    with tf.io.gfile.GFile(tmp_path, "w") as f:
      for document in documents:
        f.write("\n".join(document))
        f.write("\n\n")
