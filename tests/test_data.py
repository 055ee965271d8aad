"""Tasks registry: vocabularies, splits, deterministic batches, masks, errors, checksummed download."""
from __future__ import annotations

import hashlib
from importlib.resources import files

import pytest
import torch

from charrnn import registry
from charrnn.config import CHOICES, ConfigError, TrainConfig, make_config
from charrnn.tasks.data import CORPORA, ChecksumError, StreamTask, Task, Vocab, fetch, make_task

B, T = 8, 16
ALL_TASKS = ("tinyshakespeare", "nietzsche", "names", "arithmetic", "bitflip")


def task_for(name: str = "tinyshakespeare", **overrides):
    return make_task(TrainConfig(task=name, **overrides))


def example_text(task, x: torch.Tensor) -> str:
    """An input row as text without its eos (x holds the eos when the example is shorter than T)."""
    return task.vocab.decode(x).rstrip("\n")


def assert_batches_equal(a, b) -> None:
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.mask, b.mask)


# ----------------------------------------------------------------------------- registry, corpora, vocab

def test_every_task_entry_names_its_task_class_and_the_names_are_the_config_choices():
    assert tuple(registry.TASKS) == CHOICES["task"]
    for entry in registry.TASKS.values():
        cls = registry.load(entry.build)
        assert issubclass(cls, Task) and entry.stream == issubclass(cls, StreamTask), entry.name
    assert registry.STREAM_TASKS == ("tinyshakespeare", "nietzsche", "text")


def test_unknown_task_raises_one_line_config_error_listing_choices():
    with pytest.raises(ConfigError, match=r"task='nope'.*valid choices: tinyshakespeare") as err:
        make_config({"task": "nope"})   # the edge: make_task trusts a config make_config made
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_shipped_corpus_matches_its_recorded_sha256(name):
    raw = (files("charrnn.tasks") / "corpora" / f"{name}.txt").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == CORPORA[name].sha256


@pytest.mark.parametrize(("name", "overrides", "size"), [
    ("tinyshakespeare", {}, 65),
    ("nietzsche", {}, 85),
    ("names", {}, 29),                          # <pad> <bos> <eos> + 26 letters
    ("arithmetic", {}, 16),                     # specials + 10 digits + "+", "=", "-"
    ("arithmetic", {"arith_ops": "+-*"}, 17),
    ("bitflip", {}, 2),
])
def test_vocab_size_per_task(name, overrides, size):
    assert task_for(name, **overrides).vocab.size == size


def test_vocab_encode_decode_round_trip_and_decode_skips_pad_and_bos():
    vocab = Vocab(("<pad>", "<bos>", "\n", "a", "b"), pad_id=0, bos_id=1, eos_id=2)
    assert vocab.encode("ab\nba") == [3, 4, 2, 4, 3]
    assert vocab.decode([1, 3, 4, 2, 0, 0]) == "ab\n"
    assert vocab.decode(torch.tensor([3, 2, 4])) == "a\nb"  # eos does not stop decoding


def test_vocab_encode_unknown_character_is_a_config_error():
    with pytest.raises(ConfigError, match="not in the task vocabulary"):
        task_for().vocab.encode("ROMEO: ~")


# ----------------------------------------------------------------------------- text streams

def test_corpus_split_is_first_90_percent_train_last_10_percent_val():
    task = task_for()
    total = len(task.train_ids) + len(task.val_ids)
    assert total == 1_115_394
    assert len(task.train_ids) == int(total * 0.9) == task.train_tokens
    assert task.val_text(10) == task.vocab.decode(task.val_ids[:10])
    assert task_for().val_text(30) == task.val_text(30)


def test_dataset_fraction_shrinks_train_prefix_and_leaves_val_identical():
    full, part = task_for(), task_for(dataset_fraction=0.25)
    assert part.train_tokens == int(full.train_tokens * 0.25)
    assert torch.equal(part.train_ids, full.train_ids[:part.train_tokens])
    assert torch.equal(part.val_ids, full.val_ids)
    for a, b in zip(full.val_batches(B, T, 3), part.val_batches(B, T, 3)):
        assert_batches_equal(a, b)


@pytest.mark.parametrize("name", ALL_TASKS)
@pytest.mark.parametrize("carry", [False, True])
def test_train_batch_is_a_pure_function_of_step_and_seed(name, carry):
    task = task_for(name)
    first = task.train_batch(3, B, T, 0, carry)
    assert_batches_equal(first, task_for(name).train_batch(3, B, T, 0, carry))
    assert first.x.dtype == first.y.dtype == torch.int64 and first.mask.dtype == torch.bool
    assert first.x.shape == first.y.shape == first.mask.shape
    assert not torch.equal(first.x, task.train_batch(4, B, T, 0, carry).x)


def test_train_batch_without_carry_depends_on_seed():
    task = task_for()
    assert not torch.equal(task.train_batch(0, B, T, 0, False).x, task.train_batch(0, B, T, 1, False).x)


def test_stream_batch_is_x_shifted_by_one_with_full_mask():
    batch = task_for().train_batch(0, B, T, 0, False)
    assert torch.equal(batch.x[:, 1:], batch.y[:, :-1])
    assert batch.mask.all() and batch.x.shape == (B, T)


def test_carry_rows_continue_across_consecutive_batches_within_an_epoch():
    task = task_for()
    steps_per_epoch = task.batches_per_epoch(B, T)
    for k in (0, 1, steps_per_epoch - 2):
        now, nxt = task.train_batch(k, B, T, 7, True), task.train_batch(k + 1, B, T, 7, True)
        assert torch.equal(now.y[:, -1], nxt.x[:, 0])
        starts = task._track_starts(k, B, T, 7)
        assert torch.equal(task._track_starts(k + 1, B, T, 7), starts + T)
        assert torch.equal(now.x, task.train_ids[starts[:, None] + torch.arange(T)])


def test_carry_tracks_are_disjoint_parallel_pieces_of_the_train_split():
    task = task_for()
    starts = task._track_starts(0, B, T, 0)
    gaps = starts[1:] - starts[:-1]
    assert (gaps == gaps[0]).all() and gaps[0] * B <= task.train_tokens
    assert gaps[0] >= task.batches_per_epoch(B, T) * T + 1


def test_val_batches_are_identical_every_call_and_evenly_spaced():
    task = task_for()
    first, again = task.val_batches(B, T, 4), task.val_batches(B, T, 4)
    assert len(first) == 4
    for a, b in zip(first, again):
        assert_batches_equal(a, b)
    assert torch.equal(first[0].x[0], task.val_ids[:T])
    assert torch.equal(first[-1].y[-1], task.val_ids[-T:])


def test_seq_len_longer_than_the_train_split_is_a_config_error(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("abcdefghij" * 5)
    task = task_for("text", path=str(path))
    with pytest.raises(ConfigError, match="seq_len=100"):
        task.train_batch(0, 2, 100, 0, False)
    with pytest.raises(ConfigError, match="batch_size=8"):
        task.train_batch(0, 8, 10, 0, True)


def test_text_task_reads_a_utf8_file_with_its_own_vocab(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("héllo wörld\n" * 50, encoding="utf-8")
    task = task_for("text", path=str(path))
    assert isinstance(task, StreamTask)
    assert task.vocab.itos == tuple(sorted(set("héllo wörld\n")))
    batch = task.train_batch(0, 4, 8, 0, False)
    assert set(task.vocab.decode(batch.x.flatten())) <= set("héllo wörld\n")
    assert task.sample_prime() == "\n"


@pytest.mark.parametrize(("content", "message"), [
    (None, "file not found"),
    (b"\xff\xfe not utf-8 at all, really not " * 3, "not valid UTF-8"),
    (b"tiny", "too short"),
])
def test_text_task_unusable_file_is_a_one_line_config_error(tmp_path, content, message):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as err:
        task_for("text", path=str(path))
    assert "path=" in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- sequence tasks

def test_names_examples_are_bos_name_eos_then_pad_with_mask_on_real_targets():
    task = task_for("names")
    vocab = task.vocab
    batch = task.train_batch(0, 64, 999, 0, False)             # seq_len is ignored
    assert batch.x.shape == (64, task.fixed_seq_len) == (64, 16)  # longest name (15) + 1
    assert (batch.x[:, 0] == vocab.bos_id).all()
    assert torch.equal(batch.mask, batch.y != vocab.pad_id)
    for x, y in zip(batch.x, batch.y):
        name = example_text(task, x)
        assert name.isalpha() and vocab.decode(y) == name + "\n"
        assert y[len(name)] == vocab.eos_id
    assert vocab.itos[vocab.pad_id] == "<pad>" and vocab.pad_id == 0


def test_names_split_partitions_the_distinct_names_10_percent_val_independent_of_run_seed():
    task = task_for("names", seed=5)
    train = [example_text(task, x) for x in task.train.x]
    val = [example_text(task, x) for x in task.val.x]
    lines = (files("charrnn.tasks") / "corpora" / "names.txt").read_text().splitlines()
    distinct = set(lines)
    assert len(lines) == 32033 and len(distinct) == 29494      # names.txt repeats some names
    assert len(val) == 2949 and len(train) == 29494 - 2949
    assert sorted(train + val) == sorted(distinct) and not set(train) & set(val)
    assert task_for("names", seed=9).val_texts == task.val_texts == tuple(name + "\n" for name in val)
    assert task.sample_prime() == ""
    assert task.val_text(20).endswith("\n")


def test_names_dataset_fraction_keeps_leading_train_examples_and_same_val():
    full, part = task_for("names"), task_for("names", dataset_fraction=0.1)
    assert len(part.train) == int(len(full.train) * 0.1)
    assert torch.equal(part.train.x, full.train.x[:len(part.train)])
    assert torch.equal(part.val.x, full.val.x) and part.train_tokens < full.train_tokens


def test_arithmetic_mask_covers_exactly_the_answer_and_eos():
    task = task_for("arithmetic")
    batch = task.train_batch(0, 256, T, 0, False)
    for x, y, mask in zip(batch.x, batch.y, batch.mask):
        problem = example_text(task, x)  # e.g. "12+7=19"
        question, answer = problem.split("=")
        a, b = question.split("+")
        assert int(answer) == int(a) + int(b) and max(len(a), len(b)) <= 2
        assert task.vocab.decode(y[mask]) == answer + "\n"
        assert mask.nonzero().flatten().tolist() == list(range(len(question) + 1, len(problem) + 1))


def test_arithmetic_rows_decode_to_problem_text_and_prime_is_a_val_question():
    task = task_for("arithmetic")
    rows = {example_text(task, x) for x in torch.cat([task.train.x, task.val.x])}
    assert "12+7=19" in rows and "0+0=0" in rows and "99+99=198" in rows
    prime = task.sample_prime()
    assert prime.endswith("=") and task.val_text(100).startswith(prime)


def test_arithmetic_val_is_disjoint_from_train_and_covers_the_space():
    task = task_for("arithmetic")
    train = {example_text(task, x) for x in task.train.x}
    val = {example_text(task, x) for x in task.val.x}
    assert len(val) == 1000 and len(train) == 9000 and not train & val


@pytest.mark.parametrize("ops", ["-", "*", "+-*"])
def test_arithmetic_other_operators_give_correct_answers(ops):
    task = task_for("arithmetic", arith_ops=ops, arith_digits=1)
    for x in task.train.x:
        question, answer = example_text(task, x).split("=")
        assert int(answer) == eval(question)  # noqa: S307 - digits and one operator only
    assert len(task.train) + len(task.val) == 100 * len(ops)


def test_arithmetic_large_space_is_sampled_with_val_disjoint():
    task = task_for("arithmetic", arith_digits=4)
    train = {example_text(task, x) for x in task.train.x}
    assert len(train) == 50_000 and len(task.val) == 1000
    assert not train & {text.rstrip("\n") for text in task.val_texts}


@pytest.mark.parametrize("name", ["tinyshakespeare", "names", "arithmetic"])
def test_language_model_tasks_have_x_shifted_by_one_against_y(name):
    task = task_for(name)
    assert task.autoregressive
    for batch in (task.train_batch(0, 64, T, 0, False), task.val_batches(64, T, 1)[0]):
        assert torch.equal(batch.x[:, 1:], batch.y[:, :-1])


def test_arithmetic_bad_operator_is_a_config_error():
    with pytest.raises(ConfigError, match="arith_ops='/'"):
        task_for("arithmetic", arith_ops="/")


def test_sequence_carry_visits_each_example_once_per_epoch():
    task = task_for("arithmetic", arith_digits=1)  # 90 train problems
    per_epoch = task.batches_per_epoch(10, T)
    seen = torch.cat([task.train_batch(k, 10, T, 0, True).x for k in range(per_epoch)])
    assert per_epoch == 9 and len({tuple(r.tolist()) for r in seen}) == 90
    other_epoch = task.train_batch(per_epoch, 10, T, 0, True)
    assert not torch.equal(other_epoch.x, task.train_batch(0, 10, T, 0, True).x)


def test_bitflip_targets_are_flipped_inputs_with_full_mask():
    task = task_for("bitflip", bitflip_bits=10)
    batch = task.train_batch(0, 32, T, 0, False)
    assert batch.x.shape == (32, 10)
    assert torch.equal(batch.y, 1 - batch.x) and batch.mask.all()
    assert task.has_accuracy and not task.autoregressive
    assert len(task.sample_prime()) == 10 and set(task.sample_prime()) <= {"0", "1"}


def test_bitflip_small_width_enumerates_all_integers_split_90_10():
    task = task_for("bitflip", bitflip_bits=8)
    weights = 2 ** torch.arange(7, -1, -1)
    train, val = set((task.train.x * weights).sum(1).tolist()), set((task.val.x * weights).sum(1).tolist())
    assert len(val) == 25 and len(train) == 231 and train | val == set(range(256))


def test_bitflip_64_bits_has_disjoint_val():
    task = task_for("bitflip", bitflip_bits=64)
    train = {tuple(r) for r in task.train.x.tolist()}
    assert len(task.val) == 1000 and not any(tuple(r) in train for r in task.val.x.tolist())


@pytest.mark.parametrize(("name", "expected"), [
    ("tinyshakespeare", False), ("names", False), ("arithmetic", True), ("bitflip", True)])
def test_has_accuracy_only_for_arithmetic_and_bitflip(name, expected):
    assert task_for(name).has_accuracy is expected


def test_sequence_val_batches_are_fixed_and_val_text_is_whole_examples():
    task = task_for("arithmetic")
    for a, b in zip(task.val_batches(16, T, 3), task.val_batches(16, T, 3)):
        assert_batches_equal(a, b)
    text = task.val_text(30)
    assert len(text) <= 30 and text.endswith("\n") and text.count("=") == text.count("\n")


# ----------------------------------------------------------------------------- fetch

def test_fetch_file_url_verifies_checksum_and_writes_dest(tmp_path):
    source = tmp_path / "src.txt"
    source.write_bytes(b"to be or not to be\n")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    dest = fetch(source.as_uri(), digest, tmp_path / "out" / "corpus.txt")
    assert dest.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["corpus.txt"]
    source.unlink()  # a verified dest is returned without downloading again
    assert fetch("file:///nonexistent", digest, dest) == dest


def test_fetch_checksum_mismatch_raises_and_leaves_no_file(tmp_path):
    source = tmp_path / "src.txt"
    source.write_bytes(b"corrupted")
    out = tmp_path / "out"
    with pytest.raises(ChecksumError, match="does not match"):
        fetch(source.as_uri(), "0" * 64, out / "corpus.txt")
    assert list(out.iterdir()) == []


def test_bitflip_tiny_width_uses_every_integer():
    task = task_for("bitflip", bitflip_bits=4)
    assert task.fixed_seq_len == 4 and len(task.train) + len(task.val) == 16
