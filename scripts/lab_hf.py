"""Hugging Face side of the engine lab; runs inside the lab's vLLM venv (torch, transformers, peft live there).

    lab_hf.py convert GGUF OUT_DIR   GGUF -> HF folder (bfloat16) that vLLM can serve
    lab_hf.py lora HF_DIR OUT_DIR    a rank-8 LoRA adapter (q_proj, v_proj) for runtime-LoRA tests

Both write into OUT_DIR.partial and rename at the end, so a half-written folder is never mistaken for a result.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def _fresh(out: Path) -> Path:
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    return partial


def convert(gguf: Path, out: Path) -> None:
    partial = _fresh(out)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # A model loaded from GGUF is flagged as quantized and refuses save_pretrained; a fresh model built from the
    # same config (minus the quantization flag) with the dequantized weights saves normally.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(out)


def lora(hf_dir: Path, out: Path) -> None:
    from peft import LoraConfig, get_peft_model

    partial = _fresh(out)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.bfloat16)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(partial)
    partial.rename(out)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("convert", "lora"):
        print("usage: lab_hf.py convert GGUF OUT_DIR | lora HF_DIR OUT_DIR", file=sys.stderr)
        return 2
    action, src, dst = argv
    (convert if action == "convert" else lora)(Path(src), Path(dst))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
