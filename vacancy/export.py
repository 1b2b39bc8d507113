"""Export a saved best/ to ONNX Runtime for fast CPU tagging, and check the export on the run's own
test titles before anyone uses it.

    python -m vacancy.export --model runs/my/best            # best/onnx/model.onnx (fp32)
    python -m vacancy.export --model runs/my --int8          # also model.int8.onnx
    python -m vacancy.predict --model runs/my/best --backend onnx "Senior Java Developer"

The graph takes token ids and the attention mask (batch and sequence axes dynamic) and gives the
logits and the unit mean token states of the last layer (the pooling is inside it, so the kNN part
needs no torch at predict time either). int8 is onnxruntime.quantization.quantize_dynamic of the
fp32 graph: weights int8 per output channel, activations quantized on the fly.

The exporter is torch.onnx's dynamo path (`torch.export` into onnxscript's op library, which
torch 2.13 leaves to the `onnxscript` package: pinned beside this module's users). The TorchScript
exporter (`dynamo=False`) still runs in torch 2.13 but is the deprecated path, and on transformers
5's BERT it traces the attention-mask code into constants: its graph scored another batch shape
wrong by 0.02 in the logits. optimum-onnx would be one more dependency (and its own transformers
pin) for what is here one call and a wrapper module.

The self-check scores the run's test titles (best/'s parent holds test_predictions.csv; or
`--check-data CSV` with a `title` column) with the PyTorch path and each graph, and refuses a graph
whose final decisions (areas after the mix, the thresholds and the at-least-one rule) differ
on more than 0.5% of them (--max-disagreement): a refused fp32 export is removed whole; a
refused int8 graph is not written and the fp32 one stays. best/onnx/export.json ties the export
to best/'s weights (their hash) and records the check's figures, so `load_tagger(backend="auto")`
takes only an export of this very model.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .onnx_backend import (EXPORT_FILE, FP32_FILE, INT8_FILE, ONNX_DIR, WEIGHTS_FILE,
                           ExportError, OnnxBackend, cores, read_labels, weights_hash)

MAX_DISAGREEMENT = 0.005  # share of check titles whose areas may differ from the PyTorch path's
OPSET = 18  # the dynamo exporter's lowest opset; onnxruntime 1.32 runs up to 23
CHECK_TITLES = 5000  # at most this many check titles (a fixed random sample of more)
REQUIRED_FILES = ("config.json", WEIGHTS_FILE, "tokenizer.json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model", required=True, help="a run's best/ directory (or the run)")
    parser.add_argument("--int8", action="store_true",
                        help="also write model.int8.onnx (dynamic quantization)")
    parser.add_argument("--check-data", help="CSV with a `title` column to check the export on "
                                             "(default: the run's test_predictions.csv)")
    parser.add_argument("--max-disagreement", type=float, default=MAX_DISAGREEMENT,
                        help="the largest share of check titles whose areas may differ from the "
                             "PyTorch path's (default: %(default)s)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    if not 0 <= args.max_disagreement <= 1:
        parser.error(f"--max-disagreement: must be in [0, 1], got {args.max_disagreement}")
    return args


def best_dir(path: str) -> Path:
    """The best/ that --model names, with the files an export reads."""
    from .predict import PredictError, model_dir
    try:
        best = model_dir(path)
    except PredictError as e:
        raise ExportError(str(e)) from None
    for name in REQUIRED_FILES:
        if not (best / name).is_file():
            raise ExportError(f"--model {path}: {best / name}: no such file (not a whole best/)")
    return best


def check_titles(best: Path, check_data: str | None) -> tuple[list[str], str]:
    """(titles, where they come from) for the self-check: --check-data, the run's test titles,
    or synthetic ones with a warning."""
    import pandas as pd
    path = Path(check_data) if check_data else best.parent / "test_predictions.csv"
    if not path.is_file():
        if check_data:
            raise ExportError(f"--check-data {check_data}: no such file")
        from .synth import generate
        print(f"warning: {path}: no such file; checking on 2000 synthetic titles instead "
              "(--check-data CSV for real ones)", file=sys.stderr)
        return [title for title, _ in generate(2000, seed=0)], "2000 synthetic titles"
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise ExportError(f"{path}: cannot read as a UTF-8 CSV ({str(e).strip()})") from None
    if "title" not in table.columns:
        raise ExportError(f"{path}: no `title` column")
    titles = table["title"].tolist()
    if len(titles) > CHECK_TITLES:
        keep = np.sort(np.random.default_rng(0).choice(len(titles), CHECK_TITLES, replace=False))
        titles = [titles[i] for i in keep]
    if not titles:
        raise ExportError(f"{path}: no titles to check the export on")
    return titles, f"{len(titles)} titles of {path}"


def export_graph(model, tokenizer, path: Path) -> None:
    """best/'s classifier as an ONNX graph: (input_ids, attention_mask) -> (logits, vectors)."""
    import torch

    from .torch_backend import mean_states

    class Graph(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                             output_hidden_states=True)  # only the last layer stays in the graph
            return out.logits, mean_states(out.hidden_states[-1], attention_mask)

    # two titles of different lengths: padding in the example, so the mask is not traced away
    example = tokenizer(["senior java developer", "data engineer"], padding=True,
                        return_tensors="pt")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    axes = {0: batch, 1: sequence}
    # torch.export's notes on the named axes and torch.onnx's on torchvision: not for the user
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Graph(model).eval(), (example["input_ids"], example["attention_mask"]),
                          str(path), dynamo=True, opset_version=OPSET, external_data=False,
                          input_names=["input_ids", "attention_mask"],
                          output_names=["logits", "vectors"],
                          dynamic_shapes={"input_ids": axes, "attention_mask": axes},
                          verbose=False)


def quantize(fp32: Path, int8: Path) -> None:
    """Dynamic int8 quantization of the encoder's weight matrices (its compute), per output
    channel. The classification head stays fp32 (a few thousand multiply-adds per title); on
    O*NET major that changed no decision either way: the encoder's rounding is what moves them
    (docs/PERFORMANCE.md)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    head = [node.name for node in onnx.load(str(fp32), load_external_data=False).graph.node
            if any(name.startswith("model.classifier.") for name in node.input)]
    head += [f"{name}_MatMul" for name in head]  # the name a Gemm gets as MatMul + Add there
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process the graph: for static quantization
    try:
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=head)
    finally:
        root.setLevel(level)


def timed_parts(tagger, titles, batch_size: int, max_length: int) -> tuple[dict, float]:
    """(each part's probabilities, titles/s of the whole mix) after an untimed warm-up batch."""
    tagger.probs(titles[:batch_size], batch_size, max_length)
    start = time.perf_counter()
    parts = tagger.part_probs(titles, batch_size, max_length)
    return parts, len(titles) / (time.perf_counter() - start)


def check_graph(tagger, reference: dict, titles, batch_size: int, max_length: int) -> dict:
    """How `tagger` (an ONNX graph in the mix) differs from the PyTorch path's `reference` parts:
    the share of titles whose areas differ, the largest gap in the transformer's probabilities,
    speed."""
    from .ensemble import mix
    from .metrics import predict_labels
    parts, speed = timed_parts(tagger, titles, batch_size, max_length)
    rule = tagger.thresholds, tagger.at_least_one
    differ = (predict_labels(mix(parts, tagger.weights), *rule)
              != predict_labels(mix(reference, tagger.weights), *rule)).any(axis=1)
    gap = np.abs(parts["transformer"] - reference["transformer"]).max(initial=0)
    return {"titles": len(titles), "titles_differing": int(differ.sum()),
            "disagreement": float(differ.mean()), "max_transformer_prob_diff": float(gap),
            "titles_per_s": round(speed, 1)}


def describe(name: str, figures: dict, torch_speed: float) -> str:
    return (f"{name}: areas agree with PyTorch on {100 * (1 - figures['disagreement']):.2f}% "
            f"of titles ({figures['titles_differing']} differ), transformer probabilities "
            f"within {figures['max_transformer_prob_diff']:.1e}, "
            f"{figures['titles_per_s']:.0f} titles/s ({figures['titles_per_s'] / torch_speed:.2f}x "
            "PyTorch; the whole mix)")


def export(best: Path, titles: list[str], source: str, int8: bool, batch_size: int,
           max_length: int, max_disagreement: float = MAX_DISAGREEMENT
           ) -> tuple[list[str], list[str]]:
    """Write best/onnx/ (replacing an earlier export): (the graphs written, the refusal lines).
    A refused fp32 graph leaves no export behind."""
    import dataclasses

    import torch

    from .inference import load_tagger
    tagger = load_tagger(best, backend="torch")
    staging = best / (ONNX_DIR + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(cores())  # as many as the ONNX session: a fair race
    try:
        reference, torch_speed = timed_parts(tagger, titles, batch_size, max_length)
        print(f"PyTorch: {torch_speed:.0f} titles/s on {source} (the mix: "
              f"{', '.join(tagger.weights)})", file=sys.stderr)
        export_graph(tagger.model, tagger.tokenizer, staging / FP32_FILE)
        files, figures, refused = [FP32_FILE], {}, []
        for name in (FP32_FILE, INT8_FILE) if int8 else (FP32_FILE,):
            if name == INT8_FILE:
                quantize(staging / FP32_FILE, staging / INT8_FILE)
            backend = OnnxBackend(staging / name, best, tagger.tokenizer.pad_token_id,
                                  len(tagger.labels), tagger.model.config.hidden_size)
            figures[name] = check_graph(dataclasses.replace(tagger, backend=backend), reference,
                                        titles, batch_size, max_length)
            print(describe(name, figures[name], torch_speed), file=sys.stderr)
            if figures[name]["disagreement"] > max_disagreement:
                refused.append(f"{best / ONNX_DIR / name}: not written: its areas differ from "
                               f"the PyTorch path's on {figures[name]['titles_differing']} of "
                               f"{len(titles)} check titles "
                               f"({100 * figures[name]['disagreement']:.2f}% > "
                               f"{100 * max_disagreement:.1f}%)")
                if name == FP32_FILE:
                    return [], refused
                (staging / name).unlink()
            elif name != FP32_FILE:
                files.append(name)
        record = {"format": 1, "weights_hash": weights_hash(best), "labels": tagger.labels,
                  "hidden_size": tagger.model.config.hidden_size,
                  "pad_id": tagger.tokenizer.pad_token_id, "files": files,
                  "exporter": f"torch.onnx dynamo (torch {torch.__version__}), opset {OPSET}",
                  "check": {"source": source, "torch_titles_per_s": round(torch_speed, 1),
                            **figures}}
        (staging / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n")
        install(staging, best / ONNX_DIR)
        return files, refused
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(staging, ignore_errors=True)


def install(staging: Path, target: Path) -> None:
    """Put the checked export in place of an earlier one: a crash leaves one or the other."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        best = best_dir(args.model)
        read_labels(best)
        titles, source = check_titles(best, args.check_data)
        import transformers
        transformers.utils.logging.disable_progress_bar()
        written, refused = export(best, titles, source, args.int8, args.batch_size,
                                  args.max_length, args.max_disagreement)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:  # transformers' or torch's, on a damaged best/
        print(f"error: --model {args.model}: cannot load ({str(e).splitlines()[0]})",
              file=sys.stderr)
        return 2
    for line in refused:
        print(f"error: {line}", file=sys.stderr)
    if written:
        print(f"wrote {', '.join(str(best / ONNX_DIR / f) for f in written)}", file=sys.stderr)
    return 2 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
