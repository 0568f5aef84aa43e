"""BERT text models as .tflite files with MediaPipe Tasks metadata (vocabulary, input roles, and
label names or an embedding output): a `TextClassifier` (task classify) or `TextEmbedder` (task
embed) file that MediaPipe Tasks (Python, Android, iOS, Web) loads as it is, tokenizing raw text
itself. One file from the float32 model and one from the int8 model, when those were exported.

MediaPipe's BERT tokenizer always lowercases (its metadata has no casing option), so the files are
written only for uncased WordPiece vocabularies: with one, MediaPipe's token ids equal ours
exactly; with a cased one (every tokenizer our trainer trains) they would differ at every capital
letter, and the report says why no file was written. mediapipe 1.2 has no text-embedder metadata
writer; its generic writer with a BERT input and a feature output makes the file its
`TextEmbedder` reads.
"""

from __future__ import annotations

import json
import os
import sys
import types

import tokenizers as hf
from ai_edge_litert.interpreter import Interpreter

from common import tokenizer_files
from export.spec import Signature

FILE = "model_mediapipe.tflite"
SOURCE = "model_float32.tflite"
# The app file of each source file: the int8 one is ~4x smaller and faster.
FILES = {SOURCE: FILE, "model_int8.tflite": "model_mediapipe_int8.tflite"}
TASKS = ("classify", "embed")
# The newest metadata field the BERT writer uses is BertTokenizerOptions (metadata schema 1.1.0).
MIN_PARSER_VERSION = "1.1.0"
INPUT_ROLES = {"ids_name": "token_ids", "mask_name": "padding_mask", "segment_name": "segment_ids"}


def write_app_files(directory: str, spec: Signature, tokenizer_dir: str, labels: list[str] | None) -> dict:
    """Writes the MediaPipe file of every exported source (float32, int8); returns the report
    entry: {"files": {file: {"size_bytes", "source"}}} or {"skipped": why}."""
    reason = _unsupported(directory, spec, tokenizer_dir, labels)
    if reason:
        return {"skipped": reason}
    try:
        metadata_writer, text_classifier = _writers()
    except ImportError as e:
        return {"skipped": f"mediapipe is not installed ({e}); pip install mediapipe"}
    vocab_path = os.path.join(directory, ".vocab.txt")  # packed into each .tflite, then removed
    written = {}
    try:
        _write_vocab(os.path.join(tokenizer_dir, "tokenizer.json"), vocab_path)
        for source, target in FILES.items():
            if not os.path.isfile(os.path.join(directory, source)):
                continue
            with open(os.path.join(directory, source), "rb") as f:
                model = bytearray(f.read())
            tokenizer = metadata_writer.BertTokenizer(vocab_path)
            if spec.task == "classify":
                writer = text_classifier.MetadataWriter.create_for_bert_model(
                    model, tokenizer, metadata_writer.Labels().add(list(labels)), **_tensor_names(bytes(model))
                )
            else:
                writer = metadata_writer.MetadataWriter.create(model)
                writer.add_general_info("TextEmbedder", "Embeds text into a unit vector; compare two with cosine similarity.")
                writer.add_bert_text_input(tokenizer, **_tensor_names(bytes(model)))
                writer.add_feature_output(name="embeddings", description="The sentence embedding (L2-normalised).")
            content, _ = writer.populate()
            del writer  # its __del__ removes a temporary directory: now, not at interpreter exit
            with open(os.path.join(directory, target), "wb") as f:
                f.write(content)
            written[target] = {"size_bytes": os.path.getsize(os.path.join(directory, target)), "source": source}
    finally:
        if os.path.exists(vocab_path):
            os.remove(vocab_path)
    return {"files": written}


def _unsupported(directory: str, spec: Signature, tokenizer_dir: str, labels: list[str] | None) -> str | None:
    if spec.task not in TASKS or set(spec.input_names) != set(INPUT_ROLES.values()):
        return "only BERT text classifiers and embedders have a MediaPipe TextClassifier / TextEmbedder file"
    if spec.task == "classify" and not labels:
        return "the run has no labels.txt"
    if not any(os.path.isfile(os.path.join(directory, source)) for source in FILES):
        return f"needs {' or '.join(FILES)}: export format tflite_float32 or tflite_int8"
    tokenizer = hf.Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
    if json.loads(tokenizer.to_str())["model"]["type"] != "WordPiece":
        return "MediaPipe's BERT classifier needs a WordPiece vocabulary"
    if not tokenizer_files.lowercases(tokenizer):
        return "the run's vocabulary is cased and MediaPipe's BERT tokenizer always lowercases (ids would differ)"
    return None


def _write_vocab(tokenizer_json: str, path: str) -> None:
    """vocab.txt (one token per line, in id order) from a WordPiece tokenizer.json."""
    with open(tokenizer_json, encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{token}\n" for token, _ in sorted(vocab.items(), key=lambda item: item[1]))


def _tensor_names(model: bytes) -> dict[str, str]:
    """The writer finds inputs by TFLite tensor name (e.g. serving_default_token_ids:0)."""
    interpreter = Interpreter(model_content=model)
    by_index = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    signature = interpreter.get_signature_runner().get_input_details()
    return {role: by_index[signature[name]["index"]] for role, name in INPUT_ROLES.items()}


def _writers():
    """MediaPipe's metadata writer modules. mediapipe 1.2 wheels lack the C++ module that only
    computes the minimum parser version; ours (MIN_PARSER_VERSION) stands in for it."""
    try:
        from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, text_classifier
    except ModuleNotFoundError as e:
        if not str(e.name).startswith("mediapipe.tasks.cc"):
            raise
        _provide_parser_version()
        from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, text_classifier
    return metadata_writer, text_classifier


def _provide_parser_version() -> None:
    names = ["mediapipe.tasks.cc", "mediapipe.tasks.cc.metadata", "mediapipe.tasks.cc.metadata.python"]
    for name in names:
        module = sys.modules.setdefault(name, types.ModuleType(name))
        module.__path__ = getattr(module, "__path__", [])
    version = types.ModuleType(names[-1] + "._pywrap_metadata_version")
    version.GetMinimumMetadataParserVersion = lambda buffer: MIN_PARSER_VERSION
    sys.modules[version.__name__] = version
    sys.modules[names[-1]]._pywrap_metadata_version = version
