import pytest
import torch

from videoseq.text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIALS,
    UNK_ID,
    Vocabulary,
    normalize_caption,
    pad_sequences,
    tokenize,
)


def test_tokenize_lowercases_and_splits_punctuation_but_keeps_inner_hyphens():
    assert tokenize("A red Square, turning counter-clockwise.") == [
        "a", "red", "square", ",", "turning", "counter-clockwise", "."]
    assert tokenize("  It's   here!") == ["it's", "here", "!"]
    assert normalize_caption("The  cat,sat.") == "the cat , sat ."


def test_vocabulary_starts_with_the_specials_and_respects_min_freq():
    vocab = Vocabulary.build(["a red square", "a blue square", "a red circle"], min_freq=2)
    assert tuple(vocab.words[:4]) == SPECIALS
    assert vocab.words[4:] == ["a", "red", "square"]  # by count, ties alphabetical; blue/circle seen once
    assert vocab.encode("a blue square") == [BOS_ID, vocab.index["a"], UNK_ID, vocab.index["square"], EOS_ID]


def test_encode_decode_round_trip_and_plain_list_storage():
    vocab = Vocabulary.build(["the red triangle turns counter-clockwise", "a cross , slowly"])
    text = "the red triangle turns counter-clockwise"
    ids = vocab.encode(text)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert vocab.decode(ids) == text
    again = Vocabulary.from_list(vocab.to_list())
    assert again.decode(again.encode("a cross , slowly")) == "a cross , slowly"
    assert all(isinstance(w, str) for w in vocab.to_list())
    assert vocab.decode(ids + [vocab.index["red"]]) == text  # stops at <eos>
    assert len(vocab.encode(text, max_len=2)) == 4  # <bos> two words <eos>


def test_padding_and_mask():
    ids, mask = pad_sequences([[1, 5, 2], [1, 2], [1, 7, 8, 9, 2]])
    assert ids.shape == (3, 5) and mask.shape == (3, 5)
    assert ids[1].tolist() == [1, 2, PAD_ID, PAD_ID, PAD_ID]
    assert mask.sum(1).tolist() == [3, 2, 5]
    assert torch.equal(ids != PAD_ID, mask)


def test_bad_vocabularies_are_refused():
    with pytest.raises(ValueError, match="starts with"):
        Vocabulary(["a", "b"])
    with pytest.raises(ValueError, match="min_freq"):
        Vocabulary.build(["a"], min_freq=0)
