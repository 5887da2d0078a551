"""Data: text corpora, vocabularies and token streams for truncated BPTT."""
from .stream import cache_dir, check_fits, encode_split, eval_streams
from .text import Corpus, CorpusError, Document, load_corpus, stdlib_files
from .vocab import EOL, UNK, CharVocab, SubwordVocab, Vocab, WordVocab, load_vocab, tokenize_words

__all__ = [
    "Corpus", "CorpusError", "Document", "load_corpus", "stdlib_files",
    "Vocab", "CharVocab", "WordVocab", "SubwordVocab", "load_vocab", "tokenize_words", "UNK", "EOL",
    "encode_split", "cache_dir", "check_fits", "eval_streams",
]
from .sequences import IGNORE, Scaler, SequenceDataError, SequenceSet, aeon_bundled, load_aeon, load_digits_rows, load_file  # noqa: E402,F401
from .series import Series, SeriesError, SeriesTransform, TimeSplit, load_series, make_windows  # noqa: E402,F401
