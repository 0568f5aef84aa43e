"""The masked LM runs its last encoder block at the masked positions only, with the logits, loss
and gradients of the full forward pass, and the model still saves and loads as before."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo

VOCAB, LENGTH = 97, 16


def _inputs(batch: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    padding_mask = (np.arange(LENGTH)[None, :] < np.array([[16], [11], [7]])[:batch]).astype("int32")
    return {
        "token_ids": rng.integers(0, VOCAB, (batch, LENGTH)).astype("int32"),
        "segment_ids": (np.arange(LENGTH)[None, :] >= 8).repeat(batch, 0).astype("int32"),
        "padding_mask": padding_mask,
        "mask_positions": np.array([[0, 5, 15], [1, 2, 10], [6, 3, 3]], "int32")[:batch],
    }


def _full_logits(model, inputs, training=False):
    """The whole backbone (every position through every block), then the head's gather."""
    features = {k: inputs[k] for k in ("token_ids", "segment_ids", "padding_mask")}
    sequence = model.backbone(features, training=training)["sequence_output"]
    return model.head(sequence, inputs["mask_positions"])


def _loss(logits, targets):
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))


@pytest.mark.parametrize("normalize_first", [False, True])
def test_logits_loss_and_gradients_equal_the_full_computation(normalize_first):
    model = zoo.get_model("bert_tiny", vocab_size=VOCAB, max_sequence_length=LENGTH, normalize_first=normalize_first)
    inputs = _inputs()
    targets = np.random.default_rng(1).integers(0, VOCAB, (3, 3))
    with tf.GradientTape(persistent=True) as tape:
        fast, full = model(inputs, training=False), _full_logits(model, inputs)
        fast_loss, full_loss = _loss(fast, targets), _loss(full, targets)
    assert fast.shape == (3, 3, VOCAB) and fast.dtype == "float32"
    np.testing.assert_allclose(fast, full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast_loss, full_loss, rtol=1e-6)
    for a, b in zip(tape.gradient(fast_loss, model.trainable_variables), tape.gradient(full_loss, model.trainable_variables)):
        if b is None:  # the pooler: no part of the masked-LM loss either way
            assert a is None
            continue
        np.testing.assert_allclose(tf.convert_to_tensor(a), tf.convert_to_tensor(b), rtol=1e-4, atol=1e-6)


def test_the_last_block_computes_queries_and_feed_forward_at_the_masked_positions_only():
    model = zoo.get_model("bert_tiny", vocab_size=VOCAB, max_sequence_length=LENGTH)
    seen = []
    feed_forward = model.backbone.blocks[-1].intermediate_dense
    original = feed_forward.call
    feed_forward.call = lambda x, *a, **k: (seen.append(tuple(x.shape)), original(x, *a, **k))[1]
    model(_inputs())
    assert seen == [(3 * 3, model.backbone.hidden_dim)]  # 3 masked positions in each of 3 examples, not 3 x 16


def test_a_saved_masked_lm_loads_with_the_same_weights_and_logits(tmp_path):
    model = zoo.get_model("bert_tiny", vocab_size=VOCAB, max_sequence_length=LENGTH)
    inputs = _inputs()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    np.testing.assert_array_equal(loaded(inputs), model(inputs))
    np.testing.assert_allclose(loaded(inputs), _full_logits(loaded, inputs), rtol=1e-5, atol=1e-5)


def test_mixed_bfloat16_logits_match_the_full_computation_to_bfloat16_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = zoo.get_model("bert_tiny", vocab_size=VOCAB, max_sequence_length=LENGTH)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    inputs = _inputs()
    fast, full = model(inputs), _full_logits(model, inputs)
    assert fast.dtype == "float32"
    np.testing.assert_allclose(fast, full, atol=0.1)


def test_with_next_sentence_prediction_both_outputs_equal_the_full_computation():
    """NSP needs the [CLS] position of the last block too: it is computed beside the masked ones."""
    model = zoo.get_model("bert_tiny", vocab_size=VOCAB, max_sequence_length=LENGTH, next_sentence=True)
    inputs = _inputs()
    fast = model(inputs, training=False)
    features = {k: inputs[k] for k in ("token_ids", "segment_ids", "padding_mask")}
    pooled = model.backbone(features, training=False)["pooled_output"]
    np.testing.assert_allclose(fast["logits"], _full_logits(model, inputs), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast["nsp_logits"], model.nsp_head(pooled), rtol=1e-5, atol=1e-5)
