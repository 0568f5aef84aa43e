"""BERT: a post-LayerNorm transformer encoder, its masked-LM pretraining model and a classifier.

The backbone is a functional model built in `__init__` (as keras-hub does), so every model here
is an ordinary `keras.Model` that saves to `.keras`, loads back and composes. Task models wrap
a backbone instead of re-implementing it.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from zoo.base import Backbone, Task
from zoo.layers import (
    L2Normalization,
    SequencePooling,
    TransformerBlock,
    dense_initializer,
    get_activation,
    layer_geometry,
    POST_LN_ATTENTION_INITIALIZER,
    position_layer,
    tokenwise,
)
from zoo.registry import register_model

# Sizes from Turc et al. 2019, "Well-Read Students Learn Better": heads = H / 64, FFN = 4H.
PRESETS: dict[str, dict] = {
    "bert_tiny": dict(num_layers=2, hidden_dim=128, num_heads=2, intermediate_dim=512),
    "bert_mini": dict(num_layers=4, hidden_dim=256, num_heads=4, intermediate_dim=1024),
    "bert_small": dict(num_layers=4, hidden_dim=512, num_heads=8, intermediate_dim=2048),
    "bert_medium": dict(num_layers=8, hidden_dim=512, num_heads=8, intermediate_dim=2048),
    "bert_base": dict(num_layers=12, hidden_dim=768, num_heads=12, intermediate_dim=3072),
}


def _token_inputs() -> dict[str, keras.KerasTensor]:
    return {
        name: keras.Input(shape=(None,), dtype="int32", name=name)
        for name in ("token_ids", "segment_ids", "padding_mask")
    }


@keras.saving.register_keras_serializable(package="zoo")
class BertBackbone(Backbone):
    """Encoder: `token_ids`, `segment_ids`, `padding_mask` -> `sequence_output`, `pooled_output`."""

    def __init__(
        self,
        vocab_size: int,
        num_layers: int,
        hidden_dim: int,
        num_heads: int | list[int],
        intermediate_dim: int | list[int],
        max_sequence_length: int = 512,
        num_segments: int = 2,
        dropout: float = 0.1,
        layer_norm_epsilon: float = 1e-12,
        normalize_first: bool = False,
        activation: str = "gelu_approximate",
        head_dim: int | None = None,
        position_embedding_type: str = "learned",
        dtype=None,
        **kwargs,
    ):
        layer_heads, layer_widths, key_dim = layer_geometry(num_layers, hidden_dim, num_heads, intermediate_dim, head_dim)
        self.token_embedding = keras.layers.ReversibleEmbedding(
            vocab_size, hidden_dim, embeddings_initializer=dense_initializer(), dtype=dtype, name="token_embedding"
        )
        self.position_embedding = position_layer(position_embedding_type, max_sequence_length, dtype=dtype, name="position_embedding")
        self.segment_embedding = keras.layers.Embedding(
            num_segments, hidden_dim, embeddings_initializer=dense_initializer(), dtype=dtype, name="segment_embedding"
        )
        self.embedding_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name="embedding_norm"
        )
        self.blocks = [
            TransformerBlock(
                layer_heads[i],
                layer_widths[i],
                dropout=dropout,
                layer_norm_epsilon=layer_norm_epsilon,
                normalize_first=normalize_first,
                attention_initializer=None if normalize_first else POST_LN_ATTENTION_INITIALIZER,
                activation=activation,
                head_dim=key_dim,
                dtype=dtype,
                name=f"transformer_{i}",
            )
            for i in range(num_layers)
        ]
        # Pre-LN blocks leave the residual stream unnormalised: one LayerNorm closes the stack.
        self.final_norm = (
            keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="final_norm")
            if normalize_first
            else None
        )
        self.pooler = keras.layers.Dense(
            hidden_dim, activation="tanh", kernel_initializer=dense_initializer(), dtype=dtype, name="pooler"
        )

        inputs = _token_inputs()
        tokens = self.token_embedding(inputs["token_ids"])  # (batch, seq, hidden)
        x = tokens + self.position_embedding(tokens) + self.segment_embedding(inputs["segment_ids"])
        x = self.embedding_norm(x)
        x = keras.layers.Dropout(dropout, dtype=dtype, name="embedding_dropout")(x)
        for block in self.blocks:
            x = block(x, padding_mask=inputs["padding_mask"])
        if self.final_norm is not None:
            x = self.final_norm(x)
        pooled = self.pooler(x[:, 0, :])  # the [CLS] position
        super().__init__(
            inputs=inputs, outputs={"sequence_output": x, "pooled_output": pooled}, dtype=dtype, **kwargs
        )
        self.vocab_size = vocab_size
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.max_sequence_length = max_sequence_length
        self.num_segments = num_segments
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.normalize_first = normalize_first
        self.activation = activation
        self.head_dim = head_dim
        # Resolved geometry (not config): what each block has, whether given per layer or not.
        self.layer_num_heads = tuple(layer_heads)
        self.layer_intermediate_dims = tuple(layer_widths)
        self.key_dim = key_dim
        self.position_embedding_type = position_embedding_type

    def sequence_output_at(self, inputs: dict, positions, training=None):
        """`sequence_output` gathered at `positions` (batch, P) -> (batch, P, hidden), computing
        the last block only there (its keys and values still see every position).

        Equal to the full forward pass then a gather, to float rounding; for a masked LM that is
        most of the last layer's work saved (~1/num_layers of the encoder at 15% masking).
        """
        x, padding_mask = self.last_block_inputs()(inputs, training=training)
        x = self.blocks[-1](x, padding_mask=padding_mask, training=training, query_positions=positions)
        return x if self.final_norm is None else self.final_norm(x)

    def last_block_inputs(self) -> keras.Model:
        """This model's own graph up to its last block, whatever the constructor put there:
        inputs -> (the last block's input, its padding mask). Built once, before any trace (a
        mirrored strategy traces replicas in parallel threads); untracked, it owns no weights."""
        prefix = self.__dict__.get("_last_block_inputs")
        if prefix is None:
            node = self.blocks[-1]._inbound_nodes[0]  # noqa: SLF001
            outputs = [node.arguments.args[0], node.arguments.kwargs["padding_mask"]]
            prefix = keras.Model(self.input, outputs, name="last_block_inputs")
            object.__setattr__(self, "_last_block_inputs", prefix)
        return prefix


@keras.saving.register_keras_serializable(package="zoo")
class MaskedLMHead(keras.layers.Layer):
    """Logits at `mask_positions` only, projected through the (tied) token embedding.

    Gathering first means the vocabulary projection costs (batch, masked, vocab), not
    (batch, seq, vocab): ~15% of the work for 15% masking.
    """

    def __init__(
        self,
        token_embedding: keras.layers.ReversibleEmbedding,
        layer_norm_epsilon: float = 1e-12,
        activation: str = "gelu_approximate",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.token_embedding = token_embedding
        self.layer_norm_epsilon = layer_norm_epsilon
        self.activation = activation
        self._activation_fn = get_activation(activation)

    def build(self, sequence_output_shape, mask_positions_shape):
        hidden_dim = sequence_output_shape[-1]
        self.transform = keras.layers.Dense(
            hidden_dim, kernel_initializer=dense_initializer(), dtype=self.dtype_policy, name="transform"
        )
        self.transform.build((None, None, hidden_dim))
        self.norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="norm")
        self.norm.build((None, None, hidden_dim))
        self.bias = self.add_weight(name="bias", shape=(self.token_embedding.input_dim,), initializer="zeros")

    def call(self, sequence_output, mask_positions=None):
        """`mask_positions=None`: `sequence_output` is already (batch, masked, hidden)."""
        x = sequence_output
        if mask_positions is not None:
            x = ops.take_along_axis(x, ops.expand_dims(mask_positions, -1), axis=1)  # (batch, masked, hidden)
        x = self.norm(self._activation_fn(tokenwise(self.transform, x)))
        # Called inside this layer, the embedding reads its float32 table un-autocast, so its
        # logits may be float32 even under a bfloat16 policy: add the bias in their dtype.
        logits = tokenwise(self.token_embedding, x, reverse=True)
        logits = logits + ops.cast(self.bias, logits.dtype)
        return ops.cast(logits, "float32")  # (batch, masked, vocab); float32 for a stable loss

    def compute_output_shape(self, sequence_output_shape, mask_positions_shape):
        return tuple(mask_positions_shape) + (self.token_embedding.input_dim,)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "token_embedding": keras.layers.serialize(self.token_embedding),
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "activation": self.activation,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config, token_embedding=keras.layers.deserialize(config["token_embedding"]))
        return cls(**config)


@keras.saving.register_keras_serializable(package="zoo")
class BertMaskedLM(Task):
    """Masked-LM pretraining model: the backbone inputs plus `mask_positions` -> `logits`.

    `head_activation` and `head_layer_norm_epsilon` default to the backbone's; checkpoints may
    differ (keras-hub's head runs exact GELU and epsilon 1e-5 over a tanh-GELU, 1e-12 encoder).
    With `next_sentence=True` (BERT's next-sentence prediction) the outputs are a dict: `logits`
    and `nsp_logits` (batch, 2) from the pooled [CLS] output, 0 = B follows A, 1 = B is random.
    """

    def __init__(
        self,
        backbone: BertBackbone,
        head_activation: str | None = None,
        head_layer_norm_epsilon: float | None = None,
        next_sentence: bool = False,
        **kwargs,
    ):
        inputs = {**_token_inputs(), "mask_positions": keras.Input(shape=(None,), dtype="int32", name="mask_positions")}
        features = backbone({k: inputs[k] for k in ("token_ids", "segment_ids", "padding_mask")})
        head_activation = head_activation or backbone.activation
        head_layer_norm_epsilon = head_layer_norm_epsilon or backbone.layer_norm_epsilon
        self.head = MaskedLMHead(
            backbone.token_embedding,
            head_layer_norm_epsilon,
            activation=head_activation,
            dtype=backbone.dtype_policy,
            name="mlm_head",
        )
        logits = self.head(features["sequence_output"], inputs["mask_positions"])
        outputs = logits
        if next_sentence:
            self.nsp_head = keras.layers.Dense(2, kernel_initializer=dense_initializer(), dtype="float32", name="nsp_head")
            outputs = {"logits": logits, "nsp_logits": self.nsp_head(features["pooled_output"])}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        backbone.last_block_inputs()  # for `call`
        self.backbone = backbone
        self.head_activation = head_activation
        self.head_layer_norm_epsilon = head_layer_norm_epsilon
        self.next_sentence = next_sentence

    def masked_lm_model(self) -> keras.Model:
        """This model with its masked-LM `logits` as the only output (the same layers and weights):
        what deploys, since next-sentence prediction is a pretraining objective."""
        if not self.next_sentence:
            return self
        return keras.Model(self.inputs, self.output["logits"], name=self.name)

    def call(self, inputs, training=None, mask=None):
        """The graph built in `__init__`, except that the last encoder block runs at the masked
        positions only (`BertBackbone.sequence_output_at`): the same logits, less work. With
        next-sentence prediction the [CLS] position (0) is computed too, for the pooler."""
        features = {k: inputs[k] for k in ("token_ids", "segment_ids", "padding_mask")}
        positions = inputs["mask_positions"]
        if not self.next_sentence:
            return self.head(self.backbone.sequence_output_at(features, positions, training=training))
        x = self.backbone.sequence_output_at(features, ops.concatenate([ops.zeros_like(positions[:, :1]), positions], axis=1), training=training)
        return {"logits": self.head(x[:, 1:]), "nsp_logits": self.nsp_head(self.backbone.pooler(x[:, 0, :]))}

    def set_output_bias(self, values: np.ndarray) -> None:
        """Sets the per-token output bias (vocab,), e.g. to the training text's log unigram prior."""
        values = np.asarray(values, dtype="float32")
        expected = tuple(self.head.bias.shape)
        if values.shape != expected:
            raise ValueError(f"output bias must have shape {expected} (one value per token); got {values.shape}")
        self.head.bias.assign(values)


@keras.saving.register_keras_serializable(package="zoo")
class BertClassifier(Task):
    """Sequence classifier: pooled [CLS] output -> dropout -> `num_classes` logits.

    `pooling="pooler"` (BERT's, the default) classifies the pooler's [CLS] vector; "mean", "cls"
    or "max" classify the tokens pooled as a sentence embedding is (a sentence-transformers
    checkpoint's own pooling starts from what its training made meaningful).
    """

    def __init__(self, backbone: BertBackbone, num_classes: int, dropout: float = 0.1, pooling: str = "pooler", **kwargs):
        inputs = _token_inputs()
        features = backbone(inputs)
        if pooling == "pooler":
            pooled = features["pooled_output"]
        else:
            pooled = SequencePooling(pooling, name="pooling")(features["sequence_output"], inputs["padding_mask"])
        x = keras.layers.Dropout(dropout, name="classifier_dropout")(pooled)
        logits = keras.layers.Dense(
            num_classes, kernel_initializer=dense_initializer(), dtype="float32", name="logits"
        )(x)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.backbone = backbone
        self.num_classes = num_classes
        self.dropout = dropout
        self.pooling = pooling


@keras.saving.register_keras_serializable(package="zoo")
class BertTextEmbedder(Task):
    """Sentence embeddings: the encoder's tokens pooled (`pooling`: mean over real tokens, the
    [CLS] token, or max) and, with `normalize`, scaled to unit length -> `embeddings` (batch, hidden).

    With a sentence-transformers checkpoint (`zoo.from_pretrained(DIR, head="embedding")`) the
    pooling and normalisation are the checkpoint's own (1_Pooling/config.json, modules.json), so
    cosine similarity of two outputs is the dot product its authors trained.
    """

    def __init__(self, backbone: BertBackbone, pooling: str = "mean", normalize: bool = True, **kwargs):
        inputs = _token_inputs()
        sequence = backbone(inputs)["sequence_output"]  # (batch, seq, hidden)
        x = SequencePooling(pooling, dtype="float32", name="pooling")(ops.cast(sequence, "float32"), inputs["padding_mask"])
        if normalize:
            x = L2Normalization(dtype="float32", name="normalize")(x)
        super().__init__(inputs=inputs, outputs=x, **kwargs)
        self.backbone = backbone
        self.pooling = pooling
        self.normalize = normalize


HEADS = ("masked_lm", "classifier", "backbone", "embedding")


def bert(
    num_layers: int,
    hidden_dim: int,
    num_heads: int | list[int],
    intermediate_dim: int | list[int],
    vocab_size: int = 30522,
    max_sequence_length: int = 512,
    num_segments: int = 2,
    dropout: float = 0.1,
    layer_norm_epsilon: float = 1e-12,
    normalize_first: bool = False,
    activation: str = "gelu_approximate",
    head_dim: int | None = None,
    position_embedding: str = "learned",
    head_activation: str | None = None,
    head_layer_norm_epsilon: float | None = None,
    head: str = "masked_lm",
    num_classes: int = 2,
    next_sentence: bool = False,
    pooling: str | None = None,
    normalize: bool = True,
) -> keras.Model:
    """A BERT of the given size; `head` picks the masked-LM model, a classifier or the backbone.

    `normalize_first=True` moves LayerNorm before each sub-layer (pre-LN, as GPT-2): it trains
    from scratch without BERT's long post-LN plateau (Xiong et al. 2020), at the cost of not
    being the original BERT layout. `activation="gelu"` is exact (erf) GELU, as original BERT
    checkpoints use; `head_activation` / `head_layer_norm_epsilon` are the masked-LM head's
    (default: the encoder's). `position_embedding="sinusoidal"` replaces the learned position
    table by fixed sin/cos encodings (Vaswani et al. 2017; no weights). `next_sentence=True`
    adds the next-sentence-prediction output to the masked-LM model (other heads ignore it).
    `head="embedding"` pools the tokens (`pooling`: mean (default), cls or max) into sentence
    embeddings, L2-normalised when `normalize`. A classifier pools with BERT's pooler unless
    `pooling` names one of those (a sentence-transformers checkpoint's is taken by --init_from).
    """
    if head not in HEADS:
        raise ValueError(f"unknown BERT head {head!r}; choose one of {', '.join(HEADS)}")
    backbone = BertBackbone(
        vocab_size=vocab_size,
        num_layers=num_layers,
        hidden_dim=hidden_dim,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        max_sequence_length=max_sequence_length,
        num_segments=num_segments,
        dropout=dropout,
        layer_norm_epsilon=layer_norm_epsilon,
        normalize_first=normalize_first,
        activation=activation,
        head_dim=head_dim,
        position_embedding_type=position_embedding,
        name="bert_backbone",
    )
    if head == "backbone":
        return backbone
    if head == "classifier":
        return BertClassifier(backbone, num_classes=num_classes, dropout=dropout, pooling=pooling or "pooler", name="bert_classifier")
    if head == "embedding":
        return BertTextEmbedder(backbone, pooling=pooling or "mean", normalize=normalize, name="bert_text_embedder")
    return BertMaskedLM(
        backbone,
        head_activation=head_activation,
        head_layer_norm_epsilon=head_layer_norm_epsilon,
        next_sentence=next_sentence,
        name="bert_masked_lm",
    )


for _name, _preset in PRESETS.items():
    register_model(
        _name,
        family="bert",
        task="masked_lm",
        description="BERT L{num_layers}/H{hidden_dim}/A{num_heads}, post-LN encoder".format(**_preset),
        defaults=_preset,
    )(bert)
