"""Full-size models have exactly the published parameter counts (built, counted, never run)."""

import keras
import pytest

import zoo


def bert_backbone_params(V, P, S, H, F, L):
    embeddings = V * H + P * H + S * H + 2 * H  # token, position, segment, LayerNorm
    attention = 4 * H * H + 4 * H + 2 * H  # fused QKV + output projection, LayerNorm
    ffn = 2 * H * F + F + H + 2 * H  # intermediate + output, LayerNorm
    pooler = H * H + H
    return embeddings + L * (attention + ffn) + pooler


def bert_masked_lm_head_params(V, H):
    return H * H + H + 2 * H + V  # transform, LayerNorm, output bias (the matrix is the tied embedding)


def gpt_params(V, P, H, L):
    # Per block: QKV 3H^2+3H, output H^2+H, FFN 8H^2+5H (F = 4H), two LayerNorms 4H.
    return V * H + P * H + L * (12 * H * H + 13 * H) + 2 * H  # + final LayerNorm; LM head tied


BERT_BASE = dict(V=30522, P=512, S=2, H=768, F=3072, L=12)
GPT_SMALL = dict(V=50257, P=1024, H=768, L=12)


@pytest.fixture(scope="module")
def bert_base_backbone():
    model = zoo.get_model("bert_base", head="backbone")
    yield model
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def bert_base_masked_lm():
    model = zoo.get_model("bert_base")
    yield model
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def gpt_small():
    model = zoo.get_model("gpt_small")
    yield model
    keras.backend.clear_session()


def test_formulas_give_the_published_figures():
    assert bert_backbone_params(**BERT_BASE) == 109_482_240  # "BERT-base, 110M"
    assert gpt_params(**GPT_SMALL) == 124_439_808  # GPT-2 small, "124M"


def test_bert_base_backbone_has_the_closed_form_count(bert_base_backbone):
    assert bert_base_backbone.count_params() == bert_backbone_params(**BERT_BASE)


def test_bert_base_masked_lm_adds_only_the_head_transform_and_output_bias(bert_base_masked_lm):
    V, H = BERT_BASE["V"], BERT_BASE["H"]
    assert bert_base_masked_lm.backbone.count_params() == bert_backbone_params(**BERT_BASE)
    # The vocabulary projection is the token embedding, counted once.
    assert bert_base_masked_lm.count_params() == bert_backbone_params(**BERT_BASE) + bert_masked_lm_head_params(V, H)


def test_gpt_small_has_the_gpt2_124m_count(gpt_small):
    assert gpt_small.count_params() == gpt_params(**GPT_SMALL)
    assert gpt_small.backbone.count_params() == gpt_small.count_params()  # the LM head is tied
