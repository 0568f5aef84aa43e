"""The shared transformer layers: serialization round trips and attention-mask semantics."""

import keras
import numpy as np
import pytest

from zoo.bert import MaskedLMHead
from zoo.layers import CachedMultiHeadAttention, PositionEmbedding, TransformerBlock, attention_mask

BATCH, SEQ, HIDDEN = 2, 6, 32


def _hidden(seed=0):
    return np.random.default_rng(seed).normal(size=(BATCH, SEQ, HIDDEN)).astype("float32")


def _round_trip(layer: keras.layers.Layer, *args, **kwargs):
    """Rebuilds `layer` from its config, copies the weights over and returns both outputs."""
    expected = keras.ops.convert_to_numpy(layer(*args, **kwargs))
    clone = type(layer).from_config(layer.get_config())
    clone(*args, **kwargs)  # builds
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == layer.get_config()
    return expected, keras.ops.convert_to_numpy(clone(*args, **kwargs))


def test_attention_config_round_trip_gives_same_outputs():
    layer = CachedMultiHeadAttention(num_heads=2, head_dim=16, name="attn")
    expected, actual = _round_trip(layer, _hidden())
    np.testing.assert_allclose(actual, expected, atol=1e-6)


@pytest.mark.parametrize("normalize_first, causal", [(False, False), (True, True)], ids=["bert_post_ln", "gpt_pre_ln"])
def test_transformer_block_config_round_trip_gives_same_outputs(normalize_first, causal):
    layer = TransformerBlock(
        num_heads=2, intermediate_dim=64, dropout=0.1, layer_norm_epsilon=1e-6,
        normalize_first=normalize_first, causal=causal, name="block",
    )
    padding_mask = np.array([[1] * SEQ, [1] * (SEQ - 2) + [0] * 2], "int32")
    expected, actual = _round_trip(layer, _hidden(), padding_mask=padding_mask)
    np.testing.assert_allclose(actual, expected, atol=1e-6)
    assert layer.get_config()["normalize_first"] is normalize_first
    assert layer.get_config()["causal"] is causal


def test_position_embedding_config_round_trip_and_start_index():
    layer = PositionEmbedding(sequence_length=16, name="positions")
    expected, actual = _round_trip(layer, _hidden())
    np.testing.assert_allclose(actual, expected)
    assert expected.shape == (SEQ, HIDDEN)
    table = keras.ops.convert_to_numpy(layer.embeddings)
    np.testing.assert_array_equal(expected, table[:SEQ])
    # A decoder step at position p gets row p of the table.
    step = keras.ops.convert_to_numpy(layer(_hidden()[:, :1], start_index=5))
    np.testing.assert_array_equal(step, table[5:6])


def test_masked_lm_head_config_round_trip_gives_same_outputs():
    embedding = keras.layers.ReversibleEmbedding(100, HIDDEN, name="token_embedding")
    embedding.build((None, None))
    head = MaskedLMHead(embedding, layer_norm_epsilon=1e-6, name="mlm_head")
    mask_positions = np.array([[0, 3], [5, 5]], "int32")
    expected, actual = _round_trip(head, _hidden(), mask_positions)
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    assert expected.shape == (BATCH, 2, 100)
    assert expected.dtype == np.float32


def test_masked_lm_head_projects_through_the_token_embedding():
    """Tied weights: the head owns no vocabulary matrix of its own."""
    embedding = keras.layers.ReversibleEmbedding(100, HIDDEN, name="token_embedding")
    embedding.build((None, None))
    head = MaskedLMHead(embedding, name="mlm_head")
    head(_hidden(), np.zeros((BATCH, 1), "int32"))
    vocab_matrices = [w for w in head.weights if tuple(w.shape) == (100, HIDDEN)]
    assert len(vocab_matrices) == 1 and vocab_matrices[0] is embedding.embeddings


def test_attention_mask_is_none_when_everything_is_visible():
    assert attention_mask(None, 4, 4, causal=False) is None


def test_padding_mask_hides_padded_keys_from_every_query():
    padding_mask = np.array([[1, 1, 0], [1, 0, 0]], "int32")
    mask = keras.ops.convert_to_numpy(attention_mask(padding_mask, 3, 3, causal=False))
    assert mask.shape == (2, 1, 1, 3)
    np.testing.assert_array_equal(mask[:, 0, 0], padding_mask.astype(bool))


def test_causal_mask_lets_each_query_see_itself_and_the_past():
    mask = keras.ops.convert_to_numpy(attention_mask(None, 4, 4, causal=True))
    assert mask.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(mask[0, 0], np.tril(np.ones((4, 4), bool)))


def test_causal_mask_from_a_cache_index_hides_unwritten_slots():
    # Two queries at absolute positions 3 and 4 over a cache of 6 slots.
    mask = keras.ops.convert_to_numpy(attention_mask(None, 2, 6, causal=True, cache_index=3))
    expected = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]], bool)
    np.testing.assert_array_equal(mask[0, 0], expected)


def test_causal_and_padding_masks_combine():
    padding_mask = np.array([[0, 1, 1]], "int32")  # left padding
    mask = keras.ops.convert_to_numpy(attention_mask(padding_mask, 3, 3, causal=True))
    expected = np.tril(np.ones((3, 3), bool)) & padding_mask.astype(bool)
    np.testing.assert_array_equal(mask[0, 0], expected)


def test_attention_ignores_masked_keys():
    layer = CachedMultiHeadAttention(num_heads=2, head_dim=16)
    padding_mask = np.array([[1, 1, 1, 1, 0, 0]] * BATCH, "int32")
    mask = attention_mask(padding_mask, SEQ, SEQ, causal=False)
    x = _hidden()
    changed = x.copy()
    changed[:, 4:] = _hidden(seed=1)[:, 4:]
    out = keras.ops.convert_to_numpy(layer(x, attention_mask=mask))
    out_changed = keras.ops.convert_to_numpy(layer(changed, attention_mask=mask))
    np.testing.assert_allclose(out_changed[:, :4], out[:, :4], atol=1e-6)
    # ...and without the mask the same change is visible, so the check above has teeth.
    unmasked = keras.ops.convert_to_numpy(layer(changed))
    assert not np.allclose(unmasked[:, :4], out[:, :4], atol=1e-4)


def test_attention_with_a_cache_matches_attention_without_one():
    layer = CachedMultiHeadAttention(num_heads=2, head_dim=16)
    x = _hidden()
    full = keras.ops.convert_to_numpy(layer(x, attention_mask=attention_mask(None, SEQ, SEQ, causal=True)))
    cache = keras.ops.zeros((BATCH, 2, 2, SEQ + 2, 16))  # (batch, k/v, heads, max_length, head_dim)
    steps = []
    for t in range(SEQ):
        mask = attention_mask(None, 1, SEQ + 2, causal=True, cache_index=t)
        out, cache = layer(x[:, t : t + 1], attention_mask=mask, cache=cache, cache_index=t)
        steps.append(keras.ops.convert_to_numpy(out))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    assert tuple(cache.shape) == (BATCH, 2, 2, SEQ + 2, 16)
