"""Writes best/ and last/ of a model over and over (version 1, 2, ...) until killed; prints each
version once it is complete. Used by the test that kills a process in the middle of a save."""
import sys

from transformers import AutoTokenizer

from vacancy import checkpoint
from vacancy.model import load_model

model_dir, run_dir = sys.argv[1], sys.argv[2]
model = load_model(model_dir, ["a", "b"])
tokenizer = AutoTokenizer.from_pretrained(model_dir)
version = 0
while True:
    version += 1
    with __import__("torch").no_grad():
        model.classifier.bias.fill_(version)  # the version is readable from the weights
    checkpoint.save_best(run_dir, model, tokenizer, {"epoch": version})
    checkpoint.save_last(run_dir, model, {"version": version})
    print(version, flush=True)
