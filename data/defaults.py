"""The default dataset, named once: every function and flag defaults to it.

The embedded corpus, an 8,192-token WordPiece vocab, sequences of 128 tokens
(phase 1 of BERT's recipe) with at most 20 masked positions (15% of 128, as
in BERT).
"""

import os

DATA_DIR = os.path.join("~", "bert_lamb_data")
CORPUS = "embedded"
VOCAB_SIZE = 8192
MAX_SEQ_LENGTH = 128
MAX_PREDICTIONS_PER_SEQ = 20
DUPE_FACTOR = 5
