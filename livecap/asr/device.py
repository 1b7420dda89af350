"""Where ASR runs and how much it takes at once: the device, the compute type, CPU threads, and the
batch size chosen by the device (`batch_size = 0`; README, Batched ASR, has the measurements)."""

from __future__ import annotations

import os
import subprocess

from livecap.config import AsrConfig
from livecap.errors import LivecapError

# The CPU's encoder runs one window at a time (see `windows.encode`), so a batch there only shares
# the decoder and, for a detected language, the detection's encode.
CPU_BATCH = 4
UNKNOWN_MEMORY_BATCH = 4
MAX_BATCH = 16
GPU_MEMORY_SHARE = 0.8  # of the free memory, the rest left for CUDA's own workspace
# (d_model, decoder layers, attention heads) by model family, largest first where a name has two
_DIMS = {
    "large": (1280, 32, 20),
    "turbo": (1280, 4, 20),
    "medium": (1024, 24, 16),
    "small": (768, 12, 12),
    "base": (512, 6, 8),
    "tiny": (384, 4, 6),
}


def pick_device(requested: str) -> str:
    """`cuda` only when CTranslate2 sees a CUDA device; `auto` falls back to the CPU."""
    if requested == "cpu":
        return "cpu"
    import ctranslate2

    try:
        count = ctranslate2.get_cuda_device_count()
    except Exception:  # a broken CUDA install reports through exceptions
        count = 0
    if count > 0:
        return "cuda"
    if requested == "auto":
        return "cpu"
    raise LivecapError(
        "--gpu: CTranslate2 sees no CUDA device (no NVIDIA GPU or driver here, or CTranslate2 was "
        "built "
        "without CUDA); install the GPU extra (pip install 'livecap[gpu]') on a machine with an "
        "NVIDIA "
        "driver, or use --gpu auto to fall back to the CPU"
    )


def compute_type_for(options: AsrConfig, device: str) -> str:
    """The configured CTranslate2 type, or the device's
    default: float16 on CUDA, int8 on the CPU."""
    if options.compute_type != "default":
        return options.compute_type
    return "float16" if device == "cuda" else "int8"


def cpu_threads(options: AsrConfig) -> int:
    """Threads per worker: as configured, or the cores shared out among the workers."""
    return options.cpu_threads or max(1, (os.cpu_count() or 1) // options.workers)


def batch_size_for(options: AsrConfig, device: str) -> int:
    """The configured batch size, or (0) the device's: CPU_BATCH, or what fits in the GPU's free
    memory, which is asked once the model is loaded and holds its own."""
    if options.batch_size:
        return options.batch_size
    if device == "cpu":
        return CPU_BATCH
    return batch_size_for_memory(
        cuda_free_bytes(), batch_item_bytes(options.model, options.beam_size)
    )


def batch_item_bytes(model: str, beam_size: int) -> int:
    """A float16 estimate of what one more item of a batch holds on the GPU: encoder attention and
    activations (1500 frames), and per beam hypothesis the decoder's self- and cross-attention
    caches (448 + 1500 positions per layer). Unknown names count as large models."""
    name = model.lower()
    d_model, layers, heads = next(
        (
            dims
            for family, dims in _DIMS.items()
            if family in name and not (family == "large" and "turbo" in name)
        ),
        _DIMS["large"],
    )
    encoder = heads * 1500 * 1500 + 8 * 1500 * d_model
    caches = beam_size * 2 * layers * (1500 + 448) * d_model
    return 2 * (encoder + caches)


def batch_size_for_memory(free_bytes: int | None, item_bytes: int) -> int:
    """How many finals one CUDA call may take: as many items as fit in GPU_MEMORY_SHARE of
    the free memory (measured once the model is loaded), 1 to MAX_BATCH;
    UNKNOWN_MEMORY_BATCH when unknown."""
    if free_bytes is None:
        return UNKNOWN_MEMORY_BATCH
    return max(1, min(MAX_BATCH, int(free_bytes * GPU_MEMORY_SHARE) // item_bytes))


def cuda_free_bytes(device_index: int = 0) -> int | None:
    """Free memory of a CUDA device, through NVML (pynvml) or
    nvidia-smi; None when neither answers."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(
                pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(device_index)).free
            )
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: S110 - no NVML binding or driver: try the command line
        pass
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=memory.free",
                "--format=csv,noheader,nounits",
                f"--id={device_index}",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(out.split()[0]) * 1024 * 1024
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
