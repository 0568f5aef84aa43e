"""modelzoo: a registry of Keras models, one tf.distribute trainer, and export to TFLite/ONNX."""

from setuptools import find_packages, setup

setup(
    name="modelzoo",
    version="0.1.0",
    description="Keras model zoo (MNIST MLP, BERT, GPT, Llama) with a tf.distribute trainer and TFLite/ONNX export",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["common", "common.*", "zoo", "zoo.*", "trainers", "trainers.*", "export", "export.*", "configs", "configs.*"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15",
        "numpy>=1.26",
        "absl-py>=2.1",
        "ml_collections>=1.0",
        "tokenizers>=0.20",  # WordPiece / byte-level BPE trained on the run's own text
        "scikit-learn>=1.5",  # ships the offline `digits` dataset
        "tensorflow-datasets>=4.9",
        "tensorboard>=2.20",  # tf.summary needs it; TF 2.21 no longer installs it
        "ai-edge-litert>=2.3",  # the LiteRT interpreter: export's parity checks and export.runner (tf.lite.Interpreter is deprecated)
        "pillow>=10",  # export.runtime decodes PNG/JPEG inputs without TensorFlow
        "tf2onnx>=1.17",  # ONNX export (from_function; from_keras fails on Keras 3); co-installs with TF 2.21's protobuf
        "onnx>=1.17",  # the ONNX format itself (tf2onnx writes it; tests read its opset)
        "onnxruntime>=1.20",  # runs the exported ONNX for the parity check
        "safetensors>=0.4",  # zoo.from_pretrained / save_pretrained: Hugging Face weights
        "huggingface_hub>=0.20",  # zoo.from_pretrained("hf://ORG/NAME") downloads (only when asked)
        "h5py>=3.10",  # keras-hub presets (model.weights.h5), read and written without keras-hub
        "litert-quantizer>=0.11",  # int8/int4 weights of the GPT decode model (LiteRT's recommended quantizer)
        "litert-lm-builder>=0.18.1",  # packs RUN/export/model*.litertlm (decode model + tokenizer.json + metadata)
        "gguf>=0.19",  # zoo.from_pretrained reads llama.cpp's GGUF files (metadata, Q4_0/Q4_1/Q8_0/F16 dequantization)
        "jinja2>=3.1",  # chat templates (common.chat): trainers.generate --chat and export.runner generate --chat
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "import-linter>=2.17",  # the import graph is a contract (.importlinter), checked by tests/test_architecture.py
            "keras-hub==0.32.0",  # the referee for checkpoint import/export (tests/zoo/test_keras_hub_referee.py)
            "transformers>=5",  # tokenizer parity; installs without torch
            "scipy>=1.11",  # erf for the numpy BERT reference
            # LiteRT-LM's runtime (Engine + `litert-lm` CLI) runs the exported .litertlm in tests; wheels for
            # manylinux x86_64/aarch64 and macOS arm64 only, so tests/export/test_litertlm.py skips elsewhere.
            "litert-lm>=0.18.1; platform_machine in 'x86_64 aarch64 arm64'",
            # MediaPipe Tasks' TextClassifier judges RUN/export/model_mediapipe.tflite (tests/export/test_mediapipe.py);
            # 1.2.x keeps numpy 2 / protobuf 7 (0.10.x pins numpy<2, protobuf<5). export/mediapipe.py uses its metadata writer.
            "mediapipe>=1.2.3",
            "openvino>=2026.4",  # a second ONNX runtime judges model.onnx's free batch and sequence dimensions
            # tests/test_docs.py builds the docs site with `mkdocs build --strict` (links and anchors checked).
            "mkdocs>=1.6.1",
            "mkdocs-material>=9.8",
        ],
        "mediapipe": [
            "mediapipe>=1.2.3",  # export writes model_mediapipe.tflite (BERT classifiers, uncased vocabularies) when installed
        ],
        # keras-hub is the "theirs" of python -m benchmarks.run; 0.32 pulls tensorflow-text 2.21 and keeps TF 2.21 / Keras 3.15.
        # litert-lm: the LiteRT-LM rows of benchmarks/generation.py and benchmarks/llm.py; llama-cpp-python: the reference
        # runtime benchmarks/llm.py measures SmolLM2 against (it builds llama.cpp from source: tens of minutes on 2 cores,
        # so it is here and not in the test extra).
        "bench": ["keras-hub==0.32.0", "litert-lm>=0.18.1", "llama-cpp-python>=0.3.36"],
    },
)
