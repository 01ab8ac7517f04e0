"""Tests of the `data` package on the tiny corpus (tests/testdata)."""

import gzip
import json
import math
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from official.nlp.data import pretrain_dataloader

import data
from data import assets
from data import builder
from data import corpus
from data import export
from data import files
from data import masking
from data import pairs
from data import pipeline
from data import vocab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "testdata", "tiny_corpus.txt")
SEQ = 64
PRED = 20  # Larger than ceil(0.15 * 61): the 15% rate is never capped here.
TINY_ARGS = dict(corpus=TINY, vocab_size=512, max_seq_length=SEQ)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """The tiny corpus prepared once: (data_dir, PreparedDataset)."""
  data_dir = str(tmp_path_factory.mktemp("data"))
  return data_dir, data.prepare_dataset(data_dir, progress=False, **TINY_ARGS)


def _dataset(data_dir, **kwargs):
  args = dict(TINY_ARGS, data_dir=data_dir, global_batch_size=8,
              max_predictions_per_seq=PRED, shuffle_buffer_size=300)
  args.update(kwargs)
  return data.build_dataset(**args)


def _batches(ds, n):
  return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


def _assert_batches_equal(expected, actual):
  assert len(expected) == len(actual)
  for e, a in zip(expected, actual):
    assert e.keys() == a.keys()
    for k in e:
      np.testing.assert_array_equal(e[k], a[k], err_msg=k)


# Corpus, vocab and pairs.


def test_split_sentences():
  assert corpus.split_sentences(
      "Use e.g. a list.  It works!  Does it? (Yes.) Dr. Smith said 3 "
      "things. J. Smith agreed.") == [
          "Use e.g. a list.", "It works!", "Does it?", "(Yes.)",
          "Dr. Smith said 3 things.", "J. Smith agreed."]


def test_docstring_paragraphs_keep_prose_only():
  source = '''
def f(x):
  """Returns the square of a number given as input.

  The value is computed with a single multiplication, which is exact for
  integers.

  Args:
    x: the number to square, of any numeric type.

  >>> f(3)
  9
  """
'''
  assert list(corpus.docstring_paragraphs(source)) == [
      "Returns the square of a number given as input.",
      "The value is computed with a single multiplication, which is exact for"
      " integers."]


def test_embedded_corpus_sources():
  files = corpus.embedded_source_files()
  assert len(files) > 5000
  assert any(f.endswith(os.path.join("json", "decoder.py")) for f in files)
  assert any(os.sep + "tensorflow" + os.sep in f for f in files)
  assert not any(os.sep + "test" + os.sep in f for f in files)
  documents = list(corpus.embedded_documents(files[:150]))
  sentences = [s for doc in documents for s in doc]
  assert len(sentences) > 300
  assert all(s[0].isupper() or not s[0].isalpha() for s in sentences)
  assert len(set(sentences)) > 0.9 * len(sentences)


def test_tweets_corpus_is_the_finetuning_train_split(tmp_path):
  from trainer import classifier_data  # pylint: disable=g-import-not-at-top
  task = classifier_data.load_task(classifier_data.OFFLINE_TASK)
  documents = list(corpus.tweet_documents())
  texts = [" ".join(doc) for doc in documents]
  assert len(documents) == len(task.train.texts) == 33444
  assert texts[:50] == [" ".join(t.split()) for t in task.train.texts[:50]]
  assert not set(texts) & {" ".join(t.split()) for t in task.eval.texts}
  # A joined corpus is its parts' cached texts in order; the embedded
  # part's cache is used as it is, not gathered again.
  embedded = tmp_path / "corpora" / "embedded" / "corpus.txt"
  embedded.parent.mkdir(parents=True)
  embedded.write_text("Doc one.\nTwo.\n\nDoc two.\n", encoding="utf-8")
  path = assets.offline_text(str(tmp_path), "embedded+tweets")
  assert path.endswith(os.path.join("embedded_tweets", "corpus.txt"))
  assert list(corpus.text_file_documents(path)) == [
      ["Doc one.", "Two."], ["Doc two."]] + documents
  assert corpus.offline_parts("embedded+x") is None


def test_text_files_gzip_and_documents(tmp_path):
  with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as f:
    f.write("Third one.\n")
  (tmp_path / "a.txt").write_text("First doc, line one.\nLine two.\n\n\n"
                                  "Second doc.\n", encoding="utf-8")
  assert list(corpus.text_file_documents(str(tmp_path / "*"))) == [
      ["First doc, line one.", "Line two."], ["Second doc."], ["Third one."]]


def test_learned_vocab_and_round_trip(tiny):
  _, prepared = tiny
  tokens = vocab.load_vocab(prepared.vocab_file)
  assert prepared.vocab_size == len(tokens) == 512
  assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  assert prepared.lower_case and vocab.is_lower_case(tokens)
  tokenizer = vocab.make_tokenizer(tokens, lower_case=True)
  text = "The Parser returns the Value of the file, e.g. Café!"
  ids = tokenizer.tokenize([text])
  pieces = [tokens[i] for i in ids.flat_values.numpy()]
  assert "[UNK]" not in pieces
  words = " ".join(pieces).replace(" ##", "")
  assert words == "the parser returns the value of the file , e . g . cafe !"
  assert tokenizer.detokenize(ids).numpy()[0].decode() == words


def test_learn_vocab_exact_size_and_reserved_first():
  sentences = ["the cat sat on the mat.", "a dog sat on a log."] * 50
  tokens = vocab.learn_vocab(sentences, vocab_size=100)
  assert len(tokens) == 100 == len(set(tokens))
  assert tuple(tokens[:5]) == vocab.RESERVED_TOKENS
  assert {"t", "##t", "c", "##c"} <= set(tokens)


def test_pairs_are_reproducible_and_consecutive():
  rng = np.random.default_rng(0)
  documents = [[list(rng.integers(10, 1000, rng.integers(1, 15)))
                for _ in range(rng.integers(1, 12))] for _ in range(30)]
  streams = [[t for s in doc for t in s] for doc in documents]
  made = [list(pairs.create_pairs(documents, max_num_tokens=29,
                                  rng=random.Random(7)))
          for _ in range(2)]
  assert made[0] == made[1]
  for pair in made[0]:
    assert pair.tokens_a and pair.tokens_b
    assert len(pair.tokens_a) + len(pair.tokens_b) <= 29
    joined = pair.tokens_a + pair.tokens_b
    contiguous = any(_contains(s, joined) for s in streams)
    assert contiguous or pair.is_random_next
  labels = [p.is_random_next for p in made[0]]
  assert 0.3 < np.mean(labels) < 0.8


def _contains(stream, part):
  n = len(part)
  return any(stream[i:i + n] == part for i in range(len(stream) - n + 1))


# The prepared dataset.


def test_prepare_is_cached_and_counts(tiny):
  data_dir, prepared = tiny
  assert prepared.max_seq_length == SEQ
  assert prepared.num_examples["train"] > 1000
  assert prepared.num_examples["validation"] > 10
  again = data.prepare_dataset(data_dir, progress=False, **TINY_ARGS)
  assert again.num_examples == prepared.num_examples
  # Every 20th of the corpus's 90 documents is held out.
  assert prepared.stats["validation"]["documents"] == 4
  assert prepared.stats["train"]["documents"] == 86
  assert prepared.stats["train"]["examples"] == prepared.num_examples["train"]


def test_nsp_balance_and_next_is_consecutive(tiny):
  _, prepared = tiny
  tokens = vocab.load_vocab(prepared.vocab_file)
  documents = builder.tokenize_documents(
      list(corpus.text_file_documents(TINY)),
      vocab.make_tokenizer(tokens, lower_case=True))
  streams = [np.concatenate(doc).astype("<i4").tobytes() for doc in documents]
  examples = list(pipeline.read_examples(prepared, "train").as_numpy_iterator())
  assert sorted(e["example_id"] for e in examples) == list(
      range(prepared.num_examples["train"]))
  labels = np.array([e["next_sentence_label"] for e in examples])
  assert 0.4 < labels.mean() < 0.6
  for e in examples[:400]:
    joined = np.concatenate([e["tokens_a"], e["tokens_b"]]).astype("<i4")
    assert len(joined) <= SEQ - 3
    found = any(_find_aligned(s, joined.tobytes()) for s in streams)
    # "Is next" is consecutive text; a random B almost never continues A.
    assert found == (e["next_sentence_label"] == 0) or (
        e["next_sentence_label"] == 1 and len(e["tokens_b"]) < 3)


def _find_aligned(haystack, needle):
  start = haystack.find(needle)
  while start != -1 and start % 4:
    start = haystack.find(needle, start + 1)
  return start != -1


# Masking.


def test_item_selector_matches_numpy_top_k():
  ids = tf.ragged.constant([[2, 10, 11, 12, 13, 3, 14, 15, 3],
                            [2, 20, 3, 21, 3]], dtype=tf.int32)
  rng = np.random.default_rng(1)
  prio = [rng.random(9).astype(np.float32), rng.random(5).astype(np.float32)]
  selector = masking.StatelessItemSelector(
      tf.ragged.constant(prio, dtype=tf.float32), max_selections_per_batch=3,
      selection_rate=0.5, unselectable_ids=[2, 3, 0])
  got = selector.get_selection_mask(ids, 1).to_list()
  for row, p, mask in zip(ids.to_list(), prio, got):
    maskable = [i for i, t in enumerate(row) if t not in (0, 2, 3)]
    k = min(math.ceil(0.5 * len(maskable)), 3)
    expected = sorted(maskable, key=lambda i: -p[i])[:k]
    assert [i for i, m in enumerate(mask) if m] == sorted(expected)


def test_masking_statistics(tiny):
  data_dir, prepared = tiny
  special = vocab.special_ids(vocab.load_vocab(prepared.vocab_file))
  batches = _batches(_dataset(data_dir, global_batch_size=64), 25)
  chosen = kept = masked = 0
  for b in batches:
    weights, positions = b["masked_lm_weights"], b["masked_lm_positions"]
    for i in range(len(weights)):
      n = int(weights[i].sum())
      maskable = int(b["input_mask"][i].sum()) - 3  # [CLS] and two [SEP].
      assert n == min(math.ceil(0.15 * maskable), PRED)
      # Weights are 1 exactly at the real predictions, which come first.
      np.testing.assert_array_equal(weights[i], np.arange(PRED) < n)
      pos, labels = positions[i, :n], b["masked_lm_ids"][i, :n]
      assert np.all(np.diff(pos) > 0) and np.all(positions[i, n:] == 0)
      assert not np.isin(labels, [special.cls, special.sep, special.pad]).any()
      assert np.all(b["input_mask"][i, pos] == 1)
      now = b["input_word_ids"][i, pos]
      chosen += n
      masked += np.sum(now == special.mask)
      kept += np.sum(now == labels)
      # Unchosen tokens are untouched: [CLS] first and two [SEP]s remain.
      unchosen = np.delete(b["input_word_ids"][i], pos)
      assert unchosen[0] == special.cls
      assert np.sum(unchosen == special.sep) == 2
  assert chosen > 10000
  assert abs(masked / chosen - 0.8) < 0.02
  # Random replacements equal to the original (1 in 512) count as kept.
  assert abs(kept / chosen - 0.1) < 0.015
  assert abs(1 - (masked + kept) / chosen - 0.1) < 0.015


def _unmasked(batch):
  ids = batch["input_word_ids"].copy()
  for i in range(len(ids)):
    n = int(batch["masked_lm_weights"][i].sum())
    ids[i, batch["masked_lm_positions"][i, :n]] = batch["masked_lm_ids"][i, :n]
  return ids


def test_dynamic_masks_change_per_epoch_static_do_not(tiny):
  data_dir, prepared = tiny
  epoch = prepared.num_examples["validation"] // 5  # Batches in one epoch.
  for mode in ("dynamic", "static"):
    ds = _dataset(data_dir, split="validation", global_batch_size=5,
                  masking=mode, shuffle=False)
    b = _batches(ds, 2 * epoch)
    first, second = b[0], b[epoch]
    np.testing.assert_array_equal(_unmasked(first), _unmasked(second))
    same = np.array_equal(first["masked_lm_positions"],
                          second["masked_lm_positions"])
    assert same == (mode == "static"), mode


# Batches: features, sharding, determinism, checkpoints.


def test_features_match_model_garden_loader(tiny, tmp_path):
  data_dir, _ = tiny
  path = str(tmp_path / "valid.tfrecord")
  count = export.export_tfrecords(
      path, data_dir=data_dir, split="validation", max_predictions_per_seq=PRED,
      **TINY_ARGS)
  assert count == tiny[1].num_examples["validation"]
  loader = pretrain_dataloader.BertPretrainDataLoader(
      pretrain_dataloader.BertPretrainDataConfig(
          input_path=path, global_batch_size=5, seq_length=SEQ,
          max_predictions_per_seq=PRED, is_training=False))
  theirs = loader.load()
  ours = _dataset(data_dir, split="validation", global_batch_size=5,
                  masking="static", shuffle=False, repeat=False)
  assert ours.element_spec == theirs.element_spec
  _assert_batches_equal(_batches(ours, 100), _batches(theirs, 100))


def _rows(batch):
  """The examples of a batch as hashable rows (tokens, masks, labels)."""
  return [tuple(np.concatenate([batch[k][i].ravel() for k in sorted(batch)]))
          for i in range(len(batch["input_word_ids"]))]


def _pipeline(data_dir, pipeline_id, **kwargs):
  ctx = tf.distribute.InputContext(num_input_pipelines=2,
                                   input_pipeline_id=pipeline_id,
                                   num_replicas_in_sync=2)
  return _dataset(data_dir, input_context=ctx, **kwargs)


def test_shards_are_disjoint_and_cover(tiny):
  data_dir, prepared = tiny
  epoch = dict(shuffle=False, repeat=False, drop_remainder=False)
  whole = [r for b in _batches(_dataset(data_dir, **epoch), 10**6)
           for r in _rows(b)]
  shards = [[r for b in _batches(_pipeline(data_dir, i, **epoch), 10**6)
             for r in _rows(b)] for i in range(2)]
  assert len(whole) == prepared.num_examples["train"]
  assert sorted(shards[0] + shards[1]) == sorted(whole)
  assert abs(len(shards[0]) - len(shards[1])) <= 1


def test_pipelines_split_each_global_batch(tiny):
  # Two hosts together see exactly the global batches one host sees, with
  # the same masks: training does not depend on the number of hosts.
  data_dir, _ = tiny
  whole = _batches(_dataset(data_dir), 4)
  parts = [_batches(_pipeline(data_dir, i), 4) for i in range(2)]
  assert parts[0][0]["input_word_ids"].shape == (4, SEQ)
  for k in range(4):
    assert sorted(_rows(parts[0][k]) + _rows(parts[1][k])) == sorted(
        _rows(whole[k]))


def test_same_seed_same_batches(tiny):
  data_dir, prepared = tiny
  first = _batches(_dataset(data_dir), 3)
  _assert_batches_equal(first, _batches(_dataset(data_dir), 3))
  # The seed is part of the prepared dataset's identity (it seeds pairing).
  other_prepared = data.prepare_dataset(data_dir, seed=1, progress=False,
                                    **TINY_ARGS)
  assert other_prepared.dataset_dir != prepared.dataset_dir
  other = _batches(_dataset(data_dir, seed=1), 1)[0]
  assert not np.array_equal(first[0]["input_word_ids"], other["input_word_ids"])
  # Another order and masks of the same pairs: every example of seed 1's
  # stream over pairing seed 0 is one of seed 0's.
  def pairs(batches):  # The unmasked token ids of every example.
    out = set()
    for b in batches:
      for ids, pos, target, weight in zip(
          b["input_word_ids"], b["masked_lm_positions"], b["masked_lm_ids"],
          b["masked_lm_weights"]):
        ids = ids.copy()
        ids[pos[weight > 0]] = target[weight > 0]
        out.add(tuple(ids))
    return out
  epoch = pairs(_batches(_dataset(data_dir, masking="static", shuffle=False,
                                  repeat=False), 1000))
  reordered = _batches(_dataset(data_dir, seed=1, pairing_seed=0,
                                masking="static"), 3)
  assert pairs(reordered) <= epoch
  assert pairs(reordered) != pairs(first)


def test_iterator_checkpoint_restore(tiny, tmp_path):
  data_dir, _ = tiny
  it = iter(_dataset(data_dir))
  for _ in range(3):
    next(it)
  path = tf.train.Checkpoint(it=it).save(str(tmp_path / "ckpt"))
  expected = [{k: v.numpy() for k, v in next(it).items()} for _ in range(3)]
  restored = iter(_dataset(data_dir))
  tf.train.Checkpoint(it=restored).restore(path).assert_consumed()
  _assert_batches_equal(
      expected, [{k: v.numpy() for k, v in next(restored).items()}
                 for _ in range(3)])


# Other corpus sources and bad input.


def test_tfds_corpus_with_mock_data(tmp_path, monkeypatch):
  documents = list(corpus.text_file_documents(TINY))[:45]
  texts = ["\n".join(doc) for doc in documents]

  def as_dataset(self, split, **kwargs):
    del self, split, kwargs
    return tf.data.Dataset.from_tensor_slices({"text": texts,
                                               "title": ["t"] * len(texts)})

  # mock_data stubs out every builder's preparation and data dir; ours must
  # still run, in our data dir.
  monkeypatch.setattr(builder.BertPretraining, "download_and_prepare",
                      tfds.core.DatasetBuilder.download_and_prepare)
  with tfds.testing.mock_data(as_dataset_fn=as_dataset,
                              data_dir=str(tmp_path)):
    assert list(corpus.tfds_documents("wikipedia/20230601.en")) == documents
    prepared = data.prepare_dataset(
        str(tmp_path), corpus="tfds:wikipedia/20230601.en", vocab_size=256,
        max_seq_length=32, progress=False)
  assert prepared.stats["train"]["documents"] == 43
  assert "tfds_wikipedia_20230601_en" in prepared.dataset_dir
  batch = _batches(data.build_dataset(
      data_dir=str(tmp_path), corpus="tfds:wikipedia/20230601.en",
      vocab_size=256, max_seq_length=32, global_batch_size=4), 1)[0]
  assert batch["input_word_ids"].shape == (4, 32)


def test_bad_inputs(tiny, tmp_path):
  data_dir, _ = tiny
  with pytest.raises(FileNotFoundError, match="matches no file"):
    data.prepare_dataset(str(tmp_path), corpus=str(tmp_path / "none*.txt"))
  (tmp_path / "empty.txt").write_text("\n\n")
  with pytest.raises(ValueError, match="has no text"):
    data.prepare_dataset(str(tmp_path), corpus=str(tmp_path / "empty.txt"))
  (tmp_path / "latin1.txt").write_bytes("Caf\xe9 au lait.\n".encode("latin-1"))
  with pytest.raises(ValueError, match="not UTF-8"):
    data.prepare_dataset(str(tmp_path), corpus=str(tmp_path / "latin1.txt"))
  (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n")
  with pytest.raises(ValueError, match=r"lacks the special tokens \[MASK\]"):
    data.prepare_dataset(str(tmp_path), corpus=TINY,
                         vocab_file=str(tmp_path / "vocab.txt"))
  with pytest.raises(ValueError, match="max_seq_length=4 is too small"):
    data.prepare_dataset(str(tmp_path), corpus=TINY, max_seq_length=4)
  with pytest.raises(FileNotFoundError, match="not prepared"):
    data.build_dataset(data_dir=data_dir, corpus=TINY, vocab_size=300,
                       global_batch_size=8)
  with pytest.raises(ValueError, match="masking='random'"):
    _dataset(data_dir, masking="random")


# One build per dataset.

# A process of a job: prepares the tiny dataset, building it or not, and
# counts its builds in builds.log.
_JOB_PROCESS = """
import json, sys
import data
from data import prepared
build = sys.argv[2] == "chief"
real_build = prepared._build
def counted_build(*args):
  with open(sys.argv[1] + "/builds.log", "a") as f:
    f.write(sys.argv[2] + "\\n")
  real_build(*args)
prepared._build = counted_build
p = data.prepare_dataset(sys.argv[1], corpus=sys.argv[3], vocab_size=512,
                         max_seq_length=64, progress=False, build=build)
print(json.dumps([p.dataset_dir, p.num_examples, p.shards]))
"""


def test_one_build_per_job(tiny, tmp_path):
  # The worker starts first and finds nothing; the chief builds once; both
  # get the same dataset, the tiny fixture's.
  _, expected = tiny
  shared = tmp_path / "shared"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
  procs = []
  for role in ("worker", "chief"):
    procs.append(subprocess.Popen(
        [sys.executable, "-c", _JOB_PROCESS, str(shared), role, TINY],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True))
    time.sleep(1)
  outs = [p.communicate(timeout=600) for p in procs]
  assert all(p.returncode == 0 for p in procs), outs
  assert (shared / "builds.log").read_text() == "chief\n"
  worker, chief = (out.strip().splitlines()[-1] for out, _ in outs)
  assert worker == chief
  dataset_dir, num_examples, _ = json.loads(chief)
  assert num_examples == expected.num_examples
  # Nothing is left of the scratch folder.
  assert os.listdir(os.path.dirname(os.path.dirname(dataset_dir))) == [
      os.path.basename(os.path.dirname(dataset_dir))]


def test_waiting_for_a_build_that_never_comes(tmp_path):
  start = time.time()
  with pytest.raises(TimeoutError, match=r"did not appear in .* within 1 s; "
                     "the chief builds it there"):
    data.prepare_dataset(str(tmp_path), progress=False, build=False, wait_s=1,
                         **TINY_ARGS)
  assert time.time() - start < 10
  assert not os.listdir(tmp_path)


def test_an_interrupted_build_leaves_no_dataset(tmp_path, monkeypatch):
  def interrupted(self, *args, **kwargs):
    raise KeyboardInterrupt  # Ctrl-C halfway through the build.
  monkeypatch.setattr(builder.BertPretraining, "download_and_prepare",
                      interrupted)
  with pytest.raises(KeyboardInterrupt):
    data.prepare_dataset(str(tmp_path), progress=False, **TINY_ARGS)
  with pytest.raises(FileNotFoundError, match="not prepared"):
    data.build_dataset(data_dir=str(tmp_path), global_batch_size=8,
                       **TINY_ARGS)
  assert os.listdir(tmp_path / "bert_pretraining") == []


# Data dirs on other file systems.


def test_data_dir_on_another_file_system(tiny):
  # ram:// stands for gs:// here: both go through tf.io.gfile, and neither
  # is a local path that os.path.abspath may touch.
  data_dir, prepared = tiny
  remote = "ram://bert_lamb_test/data"
  on_ram = data.prepare_dataset(remote, progress=False, **TINY_ARGS)
  assert on_ram.dataset_dir.startswith(remote + "/bert_pretraining/")
  assert on_ram.num_examples == prepared.num_examples
  assert on_ram.vocab_file.startswith(remote)
  assert not os.path.exists("ram:")
  # The same batches as from the local data dir; prepared once.
  _assert_batches_equal(_batches(_dataset(data_dir), 2),
                        _batches(_dataset(remote), 2))
  assert data.prepare_dataset(remote, progress=False,
                              **TINY_ARGS).dataset_dir == on_ram.dataset_dir


def test_unanswered_file_system_fails_in_bounded_time(monkeypatch):
  monkeypatch.setattr(tf.io.gfile, "exists", lambda path: time.sleep(60))
  start = time.time()
  with pytest.raises(files.UnreachableError,
                     match=r"^cannot reach GCS for gs://b/d: no answer "):
    files.check_reachable("gs://b/d", timeout_s=0.5)
  assert time.time() - start < 5


@pytest.mark.parametrize("module", ["data.prepare", "trainer.main"])
def test_gs_data_dir_without_network_is_one_line(module, tmp_path):
  gs = "gs://bert-lamb-test-no-such-bucket/data"
  args = [f"--data_dir={gs}"]
  if module == "trainer.main":
    args += [f"--gin_file={ROOT}/configs/tiny.gin",
             f"--model_dir={tmp_path}/run"]
  # The trainer runs from the repository root (the configs' includes).
  cwd = ROOT if module == "trainer.main" else tmp_path
  start = time.time()
  result = subprocess.run(
      [sys.executable, "-m", module, *args], cwd=cwd,
      capture_output=True, text=True, timeout=240, check=False,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT))
  # The import of TensorFlow, then one question to GCS (30 s at most).
  assert time.time() - start < 120
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), last
  assert f"cannot reach GCS for {gs}: " in last
  assert not os.path.exists(os.path.join(cwd, "gs:"))


def test_cli_bad_input_is_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "data.prepare", f"--data_dir={tmp_path}",
       f"--corpus={tmp_path}/missing*.txt"],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), check=False)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      f"error: corpus '{tmp_path}/missing*.txt' matches no file")
