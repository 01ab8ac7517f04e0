r"""Prepares a BERT pretraining dataset: corpus -> vocab -> TFDS splits.

  python -m data.prepare --data_dir=~/bert_lamb_data
  python -m data.prepare --data_dir=DIR --corpus='/text/wiki_*.txt.gz' \
      --vocab_size=30522 --max_seq_length=512
  python -m data.prepare --data_dir=DIR --export_tfrecords=/tmp/train.tfrecord

The default (the embedded corpus, an 8192-token vocab, 128 tokens) takes about
3 minutes on 2 CPU cores and is then cached; running again returns at once.
Prints a summary: documents, sentences, tokens, examples, time. Bad input
prints one line on stderr and exits with status 1.
"""

import sys
import time

from absl import app
from absl import flags

from data import defaults
from data import export
from data import prepared as prepared_lib

FLAGS = flags.FLAGS

flags.DEFINE_string("data_dir", defaults.DATA_DIR,
                    "Where the corpus text, vocab and dataset are cached.")
flags.DEFINE_string("corpus", defaults.CORPUS,
                    "'embedded' (docstrings), 'tweets', 'embedded+tweets', "
                    "a glob of text files (a sentence a line, a "
                    "blank line between documents, .gz allowed) or "
                    "'tfds:NAME' (e.g. tfds:wikipedia/20230601.en).")
flags.DEFINE_integer("vocab_size", defaults.VOCAB_SIZE,
                     "Tokens in the learned vocab.")
flags.DEFINE_string("vocab_file", None,
                    "A vocab.txt to use instead of learning one.")
flags.DEFINE_integer("max_seq_length", defaults.MAX_SEQ_LENGTH,
                     "Tokens per example: 128 for phase 1, 512 for phase 2.")
flags.DEFINE_integer("seed", 0, "Seeds sentence pairing (and export masks).")
flags.DEFINE_integer("dupe_factor", defaults.DUPE_FACTOR,
                     "Times the training documents are paired, differently.")
flags.DEFINE_string("tfds_data_dir", None,
                    "Where tfds: corpora live (TFDS's default if unset).")
flags.DEFINE_string("export_tfrecords", None,
                    "Also write a split, statically masked, as Model Garden "
                    "pretraining TFRecords to this file.")
flags.DEFINE_string("export_split", "train", "The split to export.")
flags.DEFINE_integer("max_predictions_per_seq",
                     defaults.MAX_PREDICTIONS_PER_SEQ,
                     "Masked positions per exported example (BERT: 20 at "
                     "128 tokens, 80 at 512).")


def _summary(prepared: prepared_lib.PreparedDataset,
             seconds: float) -> str:
  lines = [f"Dataset: {prepared.dataset_dir}",
           f"Vocab:   {prepared.vocab_file} ({prepared.vocab_size} tokens)"]
  for split, n in sorted(prepared.num_examples.items(), reverse=True):
    stats = prepared.stats.get(split, {})
    lines.append(
        f"{split:>10}: {stats.get('documents', '?'):>8} documents "
        f"{stats.get('sentences', '?'):>9} sentences "
        f"{stats.get('tokens', '?'):>10} tokens {n:>8} examples")
  lines.append(f"Time: {seconds:.1f} s")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  start = time.time()
  kwargs = dict(corpus=FLAGS.corpus, vocab_size=FLAGS.vocab_size,
                vocab_file=FLAGS.vocab_file,
                max_seq_length=FLAGS.max_seq_length, seed=FLAGS.seed,
                dupe_factor=FLAGS.dupe_factor,
                tfds_data_dir=FLAGS.tfds_data_dir)
  try:
    prepared = prepared_lib.prepare_dataset(FLAGS.data_dir, progress=True,
                                            **kwargs)
    print(_summary(prepared, time.time() - start))
    if FLAGS.export_tfrecords:
      count = export.export_tfrecords(
          FLAGS.export_tfrecords, data_dir=FLAGS.data_dir,
          split=FLAGS.export_split,
          max_predictions_per_seq=FLAGS.max_predictions_per_seq, **kwargs)
      print(f"Exported {count} {FLAGS.export_split} examples to "
            f"{FLAGS.export_tfrecords}")
  except (ValueError, OSError) as e:
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
