//! LoRA adapters for SD1.5 (being written).
