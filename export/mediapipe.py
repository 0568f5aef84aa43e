"""A BERT text classifier as a .tflite with MediaPipe Tasks metadata (vocabulary, label names, input roles).

MediaPipe's `TextClassifier` (Python, Android, iOS, Web) loads the file as it is and tokenizes raw
text itself. Its BERT tokenizer always lowercases (MediaPipe's metadata has no casing option), so
the file is written only for uncased WordPiece vocabularies: with one, MediaPipe's token ids equal
ours exactly; with a cased one (every tokenizer our trainer trains) they would differ at every
capital letter, and the report says why no file was written.
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
# The newest metadata field the BERT writer uses is BertTokenizerOptions (metadata schema 1.1.0).
MIN_PARSER_VERSION = "1.1.0"
INPUT_ROLES = {"ids_name": "token_ids", "mask_name": "padding_mask", "segment_name": "segment_ids"}


def write_text_classifier(directory: str, spec: Signature, tokenizer_dir: str, labels: list[str] | None) -> dict:
    """Writes `directory/model_mediapipe.tflite` from the float32 file; returns its report entry
    ({"file", "size_bytes"}), or {"skipped": why} when this export cannot have one."""
    reason = _unsupported(directory, spec, tokenizer_dir, labels)
    if reason:
        return {"skipped": reason}
    try:
        metadata_writer, text_classifier = _writers()
    except ImportError as e:
        return {"skipped": f"mediapipe is not installed ({e}); pip install mediapipe"}
    with open(os.path.join(directory, SOURCE), "rb") as f:
        model = f.read()
    vocab_path = os.path.join(directory, ".vocab.txt")  # packed into the .tflite, then removed
    try:
        _write_vocab(os.path.join(tokenizer_dir, "tokenizer.json"), vocab_path)
        writer = text_classifier.MetadataWriter.create_for_bert_model(
            bytearray(model), metadata_writer.BertTokenizer(vocab_path), metadata_writer.Labels().add(list(labels)),
            **_tensor_names(model),
        )
        content, _ = writer.populate()
        del writer  # its __del__ removes a temporary directory: now, not at interpreter exit
    finally:
        if os.path.exists(vocab_path):
            os.remove(vocab_path)
    path = os.path.join(directory, FILE)
    with open(path, "wb") as f:
        f.write(content)
    return {"file": FILE, "size_bytes": os.path.getsize(path), "source": SOURCE}


def _unsupported(directory: str, spec: Signature, tokenizer_dir: str, labels: list[str] | None) -> str | None:
    if spec.task != "classify" or set(spec.input_names) != set(INPUT_ROLES.values()):
        return "only BERT text classifiers have a MediaPipe TextClassifier file"
    if not labels:
        return "the run has no labels.txt"
    if not os.path.isfile(os.path.join(directory, SOURCE)):
        return f"needs {SOURCE}: export format tflite_float32"
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
