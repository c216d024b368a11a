"""Image and audio classifiers, and semantic segmentation, from ``hf:DIR``: model, input spec, runtime
pipeline and real samples.

The preprocessing is translated from the folder's own processor (``hf_image`` for images, the
feature extractor here for audio), so the bundle runs from a raw file without transformers. The
verification samples are real files made by ``inputs.media`` (procedural photographs of
several sizes and modes; recorded-style audio), passed through those same runtime steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torch2ort.errors import SourceError, describe
from torch2ort.sources import LoadedModel, ModelHints

# task -> (the model's input, its transformers auto class)
MEDIA = {"image-classification": ("pixel_values", "AutoModelForImageClassification"),
         "audio-classification": ("input_values", "AutoModelForAudioClassification"),
         "semantic-segmentation": ("pixel_values", "AutoModelForSemanticSegmentation"),
         "object-detection": ("pixel_values", "AutoModelForObjectDetection")}
MEL_FILE = "mel_filters.npy"
WINDOW_FILE = "window.npy"


def load(source: str, path: Path, task: str, auto: bool, from_pretrained) -> LoadedModel:
    """``hf:DIR`` for an image or audio classification folder."""
    name, auto_cls = MEDIA[task]
    assets: dict[str, np.ndarray] = {}
    if task != "audio-classification":
        from torch2ort.sources.hf_image import image_preprocess

        steps, notes, out = image_preprocess(path, name, fixed=task != "object-detection")
        if out is None:  # the image's own aspect: height and width follow it
            dims, sweep = "batch=1,3,height=64,width=96", {"batch": [1, 2], "height": [48, 64, 96], "width": [64, 96]}
        else:
            dims, sweep = f"batch=2,3,{out[0]},{out[1]}", {"batch": [1, 2, 3]}
    else:
        name, steps, notes, dims, sweep = audio_preprocess(path, assets)
    model = from_pretrained(path, auto_cls)
    labels = _labels(model.config)
    outputs = ["logits"]
    if task == "object-detection":  # DETR-style set prediction: classes (+ no object) and boxes per query
        post = [{"op": "detections", "output": "logits", "boxes": "pred_boxes", "threshold": 0.5}]
        if model.config.model_type in SIGMOID_DETECTORS:  # independent class scores, the 100 best (query, class)
            post[0] |= {"activation": "sigmoid", "top_k": 100}
        outputs.append("pred_boxes")
        notes.append("boxes in the original image's pixels with scores and labels above a threshold, as "
                     "post_process_object_detection and pipeline(\"object-detection\") give them")
    elif task == "semantic-segmentation":  # a class per pixel of the original image
        post = [{"op": "segment", "output": "logits", "name": "segmentation"}]
        notes.append("per-pixel classes at the original image size, as the processor's "
                     "post_process_semantic_segmentation (bilinear resize of the scores, then argmax)")
    else:
        post = [{"op": "softmax", "output": "logits", "name": "probabilities"},
                {"op": "topk", "output": "probabilities", "k": min(5, max(1, len(labels)))}]
    hints = ModelHints(task=task, model_dir=str(path), labels=labels or None, preprocess=steps, postprocess=post,
                       sweep=sweep, media="audio" if task == "audio-classification" else "image", assets=assets)
    from torch2ort.spec import InputSpec

    hints.spec = InputSpec.from_cli([f"{name}:{dims}:float32"], outputs)
    notes = [f"loaded {path} with transformers {auto_cls} (task {task}" + (", auto-detected)" if auto else ")"),
             *notes, f"input {name} [{dims}] float32; labels from id2label ({len(labels)})"]
    return LoadedModel(wrapper()(model, name, outputs), source, "hf", notes, hints)


# detectors whose post_process_object_detection takes a sigmoid per class and the top k (query, class) pairs,
# not DETR's softmax with a no-object class
SIGMOID_DETECTORS = ("conditional_detr",)


def _labels(config) -> list[str]:
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label.get(i, id2label.get(str(i), i))) for i in range(len(id2label))]


def load_extractor(path: Path):
    if not (path / "preprocessor_config.json").is_file():
        raise SourceError(f"{path}: preprocessor_config.json is missing (an audio model needs its feature "
                          "extractor saved alongside: feature_extractor.save_pretrained(DIR))")
    import transformers

    try:
        return transformers.AutoFeatureExtractor.from_pretrained(str(path), local_files_only=True,
                                                                 trust_remote_code=False)  # never ask on stdin
    except Exception as exc:
        raise SourceError(f"transformers could not load the feature extractor of {path}: {describe(exc)}") from None


def audio_preprocess(path: Path, assets: dict[str, np.ndarray]):
    """(input name, steps, notes, dims, sweep) from the folder's feature extractor."""
    fe = load_extractor(path)
    kind = type(fe).__name__
    rate = int(fe.sampling_rate)
    steps: list[dict] = [{"op": "load_audio", "sample_rate": rate, "mono": True}]
    if kind == "Wav2Vec2FeatureExtractor":
        if getattr(fe, "do_normalize", False):
            steps.append({"op": "zero_mean_unit_var"})
        how = "zero-mean / unit-variance" if fe.do_normalize else "the raw waveform"
        steps += [{"op": "add_batch"}, {"op": "to_input", "name": "input_values"}]
        return ("input_values", steps, [f"feature extractor {kind}: decode, mono, {rate} Hz (soxr), {how}"],
                "batch=2,samples=16000", {"batch": [1, 2], "samples": [4000, 16000, 24000]})
    if kind == "WhisperFeatureExtractor":
        assets[MEL_FILE] = np.asarray(fe.mel_filters, dtype=np.float64)
        steps += [{"op": "log_mel", "filters": MEL_FILE, "n_fft": int(fe.n_fft), "hop_length": int(fe.hop_length),
                   "n_samples": int(fe.n_samples)},
                  {"op": "add_batch"}, {"op": "to_input", "name": "input_features"}]
        frames = int(fe.nb_max_frames)
        return ("input_features", steps,
                [f"feature extractor {kind}: decode, mono, {rate} Hz (soxr), pad/cut to {fe.n_samples} samples, "
                 f"log-mel ({fe.feature_size} bins; the filter bank from the extractor, shipped as {MEL_FILE})"],
                f"batch=2,{int(fe.feature_size)},{frames}", {"batch": [1, 2, 3]})
    if kind == "ASTFeatureExtractor":
        if not hasattr(fe, "mel_filters"):
            raise SourceError(f"{path}: {kind} computes with torchaudio here, whose Kaldi fbank is not translated; "
                              "torch2ort translates its numpy path (without torchaudio installed)")
        assets[MEL_FILE], assets[WINDOW_FILE] = np.asarray(fe.mel_filters), np.asarray(fe.window)
        steps.append({"op": "kaldi_fbank", "filters": MEL_FILE, "window": WINDOW_FILE,
                      "max_frames": int(fe.max_length)})
        if fe.do_normalize:
            steps.append({"op": "normalize", "mean": [float(fe.mean)], "std": [float(fe.std) * 2]})
        steps += [{"op": "add_batch"}, {"op": "to_input", "name": "input_values"}]
        return ("input_values", steps,
                [f"feature extractor {kind}: decode, mono, {rate} Hz (soxr), Kaldi-style log filter bank "
                 f"({fe.num_mel_bins} bins, {fe.max_length} frames; filter bank and window from the extractor, "
                 f"shipped as {MEL_FILE} and {WINDOW_FILE})" + (", normalised" if fe.do_normalize else "")],
                f"batch=2,{int(fe.max_length)},{int(fe.num_mel_bins)}", {"batch": [1, 2, 3]})
    raise SourceError(f"{path}: feature extractor {kind} is not translated yet (supported: "
                      "Wav2Vec2FeatureExtractor, WhisperFeatureExtractor, ASTFeatureExtractor)")


def extractor_features(model_dir: str | Path, wave: np.ndarray) -> dict[str, np.ndarray]:
    """transformers' own features for one mono waveform already at the extractor's rate."""
    fe = load_extractor(Path(model_dir))
    out = fe(wave, sampling_rate=fe.sampling_rate, return_tensors="np")
    key = "input_features" if "input_features" in out else "input_values"
    return {key: np.asarray(out[key], dtype=np.float32)}


def reference_feed(hints: ModelHints, raw: str) -> dict[str, np.ndarray]:
    """What transformers' own processor makes of the raw file ``raw``: the reference the bundle is judged on."""
    if hints.media == "image":
        from torch2ort.sources.hf_image import processor_pixels

        feed = {"pixel_values": processor_pixels(hints.model_dir, raw)}
        if hints.task == "zero-shot-image-classification":
            from torch2ort.sources.hf_clip import pipeline_text_inputs

            feed |= pipeline_text_inputs(hints.model_dir, hints.options["candidate_labels"])
        return feed
    from torch2ort.runtime.processors.audio import load_audio

    rate = int(next(s for s in hints.preprocess if s["op"] == "load_audio")["sample_rate"])
    return extractor_features(hints.model_dir, load_audio(raw, None, sample_rate=rate))


_CLASS: list[type] = []


def wrapper() -> type:
    """``model(**{name: x}).logits`` (or a tuple of named outputs) as a one-input module (defined on first
    use: this file imports without torch)."""
    if _CLASS:
        return _CLASS[0]
    import torch

    class OneInput(torch.nn.Module):
        def __init__(self, model, name: str, outputs: tuple[str, ...] | list[str] = ("logits",)) -> None:
            super().__init__()
            self.model, self.name, self.outputs = model, name, tuple(outputs)

        def forward(self, x):
            out = self.model(**{self.name: x})
            return out.logits if self.outputs == ("logits",) else tuple(getattr(out, k) for k in self.outputs)

    _CLASS.append(OneInput)
    return OneInput
