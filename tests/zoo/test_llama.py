"""The Llama family and the decoder options it is made of: RMSNorm, rotary positions, SwiGLU,
grouped-query attention, no biases, untied output; cached decoding; .keras files."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import zoo
from zoo.generation import Generator
from zoo.layers import RMSNormalization, RotaryEmbedding

TINY = dict(num_layers=2, hidden_dim=32, num_heads=4, num_key_value_heads=2, intermediate_dim=48, vocab_size=100,
            max_sequence_length=32)
OPTIONS = dict(norm="rms", position_embedding="rotary", activation="swiglu", num_key_value_heads=1, use_bias=False,
               tie_word_embeddings=False, rope_theta=500.0)


def _numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _logits(model, ids) -> np.ndarray:
    ids = np.asarray(ids, np.int32)
    return _numpy(model({"token_ids": ids, "padding_mask": np.ones_like(ids)}))


@pytest.fixture(scope="module")
def llama():
    keras.utils.set_random_seed(0)
    model = zoo.get_model("llama_tiny", **TINY)
    model.set_weights([w * 4 for w in model.get_weights()])  # varied greedy tokens
    return model


def test_smollm2_135m_has_the_published_geometry_and_parameter_count():
    spec = zoo.get_spec("smollm2_135m")
    assert spec.family == "llama" and spec.task == "causal_lm"
    expected = dict(num_layers=30, hidden_dim=576, num_heads=9, num_key_value_heads=3, intermediate_dim=1536, vocab_size=49152,
                    max_sequence_length=8192, rope_theta=100000.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
                    norm="rms", position_embedding="rotary", activation="swiglu", use_bias=False)
    assert {k: spec.hyperparameters()[k] for k in expected} == expected
    backbone = zoo.get_model("smollm2_135m", head="backbone")
    assert backbone.count_params() == 134_515_008  # HuggingFaceTB/SmolLM2-135M
    assert backbone.key_dim == 64


def test_gpt_defaults_stay_gpt2():
    """Each new option's default is GPT-2's: LayerNorm, learned positions, biases, one key/value
    head per query head, the output tied to the token embedding."""
    model = zoo.get_model("gpt_tiny", **{k: v for k, v in TINY.items() if k != "num_key_value_heads"})
    block = model.backbone.blocks[0]
    assert isinstance(block.attention_norm, keras.layers.LayerNormalization)
    assert block.attention.kv_heads == block.attention.num_heads and block.attention.qkv_dense.use_bias
    assert block.intermediate_dense.kernel.shape == (32, 48)  # not gated
    assert not hasattr(model.backbone.token_embedding, "reverse_embeddings")
    paths = sorted(w.path for w in model.weights)
    assert "position_embedding/embeddings" in paths and len(paths) == 2 + 2 * 12 + 2


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_decoder_option_alone_builds_decodes_from_a_cache_and_round_trips(option, tmp_path):
    keras.utils.set_random_seed(1)
    values = {"num_key_value_heads": 1} if option == "rope_theta" else {}  # rope_theta needs rotary positions to matter
    values[option] = OPTIONS[option]
    if option == "rope_theta":
        values["position_embedding"] = "rotary"
    model = zoo.get_model("gpt_tiny", **{**{k: v for k, v in TINY.items() if k != "num_key_value_heads"}, **values})
    ids = np.random.default_rng(0).integers(1, 100, (2, 12))
    full = _logits(model, ids)
    cache, steps = model.init_cache(2, 16), []
    logits, cache = model.call_with_cache(ids[:, :5], cache, 0)
    steps.append(_numpy(logits))
    for i in range(5, 12):
        logits, cache = model.call_with_cache(ids[:, i : i + 1], cache, i)
        steps.append(_numpy(logits))
    np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=2e-5)
    path = str(tmp_path / "model.keras")
    model.save(path)
    np.testing.assert_allclose(_logits(keras.saving.load_model(path), ids), full, atol=1e-6)


def test_grouped_query_attention_caches_only_the_key_value_heads_and_shares_them(llama):
    cache = llama.init_cache(3, 20)
    assert tuple(cache.shape) == (3, 2, 2, 2, 20, 8)  # (batch, layers, k/v, kv_heads=2 of 4 query heads, length, head_dim)
    attention = llama.backbone.blocks[0].attention
    assert attention.qkv_dense.kernel.shape == (32, (4 + 2 * 2) * 8)  # [q (4 heads) | k (2) | v (2)]
    # Query heads 0 and 1 share key/value head 0: swapping their query columns swaps their outputs only.
    rng = np.random.default_rng(0)
    q = rng.normal(size=(1, 4, 5, 8)).astype("float32")
    k, v = rng.normal(size=(1, 2, 5, 8)).astype("float32"), rng.normal(size=(1, 2, 5, 8)).astype("float32")
    out = _numpy(attention.attend(q, k, v, None))
    repeated = [np.repeat(x, 2, axis=1) for x in (k, v)]
    scores = q @ repeated[0].transpose(0, 1, 3, 2) / np.sqrt(8)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(out, (probs / probs.sum(-1, keepdims=True)) @ repeated[1], atol=1e-5)


def test_rotary_positions_follow_the_rotate_half_formula():
    layer = RotaryEmbedding(8, max_wavelength=100.0)
    cos, sin = (_numpy(t) for t in layer(np.zeros((1, 5, 32), "float32"), start_index=3))
    angles = np.arange(3, 8)[:, None] / 100.0 ** (np.arange(0, 8, 2) / 8)[None, :]
    np.testing.assert_allclose(cos, np.cos(np.concatenate([angles, angles], -1)), atol=1e-6)
    np.testing.assert_allclose(sin, np.sin(np.concatenate([angles, angles], -1)), atol=1e-6)
    x = np.random.default_rng(0).normal(size=(1, 1, 5, 8)).astype("float32")
    rotated = _numpy(zoo.layers.apply_rotary(x, cos, sin))
    half = np.concatenate([-x[..., 4:], x[..., :4]], -1)
    np.testing.assert_allclose(rotated, x * cos + half * sin, atol=1e-6)
    # A rotation: lengths stay, and q.k depends only on the distance between positions.
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)


def test_rms_norm_computes_in_float32_with_its_epsilon():
    x = (np.random.default_rng(0).normal(size=(2, 3, 16)) * 1e-3).astype("float32")
    layer = RMSNormalization(epsilon=1e-5)
    expected = x / np.sqrt((x.astype("float64") ** 2).mean(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(_numpy(layer(x)), expected, rtol=1e-5)
    assert not np.allclose(_numpy(RMSNormalization(epsilon=1e-6)(x)), expected, rtol=1e-3)  # the epsilon matters at this scale


def test_untied_output_has_its_own_matrix():
    keras.utils.set_random_seed(0)
    model = zoo.get_model("llama_tiny", **TINY, tie_word_embeddings=False)
    embedding = model.backbone.token_embedding
    assert embedding.reverse_embeddings.shape == (32, 100)
    tied = zoo.get_model("llama_tiny", **TINY)
    assert model.count_params() - tied.count_params() == 32 * 100


def test_llama_left_padded_batch_rows_decode_as_their_prompts_alone(llama):
    generator = Generator(llama, jit_compile=False)
    prompts = [[7, 8], list(range(30, 48)), [20, 21, 22, 23]]
    batched = generator.generate_ids(prompts, 6)
    assert batched == [generator.generate_ids([p], 6)[0] for p in prompts]
    rows, logits = generator.generate_ids([prompts[1]], 6, return_logits=True)
    full = _logits(llama, [prompts[1] + rows[0]])
    np.testing.assert_allclose(logits[0], full[0, len(prompts[1]) - 1 : -1], atol=2e-5)


def test_llama_samplers_and_stop_tokens(llama):
    generator = Generator(llama, jit_compile=False)
    free = generator.generate_ids([[5, 6, 7]], 10)[0]
    assert generator.generate_ids([[5, 6, 7]], 10, stop_token_ids=[free[4]])[0] == free[: free.index(free[4])]
    for sampler in (zoo.Sampler("top_k", top_k=3), zoo.Sampler("top_p", top_p=0.5, temperature=0.7), zoo.Sampler("temperature")):
        first = generator.generate_ids([[5, 6, 7]], 8, sampler, seed=3)
        assert generator.generate_ids([[5, 6, 7]], 8, sampler, seed=3) == first and len(first[0]) == 8


def test_llama_keras_file_keeps_the_class_and_every_option(llama, tmp_path):
    path = str(tmp_path / "llama.keras")
    llama.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is zoo.llama.LlamaCausalLM and type(loaded.backbone) is zoo.llama.LlamaBackbone
    b = loaded.backbone
    assert (b.norm, b.position_embedding_type, b.activation, b.num_key_value_heads, b.use_bias) == ("rms", "rotary", "swiglu", 2, False)
    ids = [[3, 1, 4, 1, 5, 9, 2, 6]]
    np.testing.assert_allclose(_logits(loaded, ids), _logits(llama, ids), atol=1e-6)


def test_bad_grouping_is_one_clear_error():
    with pytest.raises(ValueError, match="num_heads=4 must be a multiple of num_key_value_heads=3"):
        zoo.get_model("llama_tiny", **{**TINY, "num_key_value_heads": 3})
