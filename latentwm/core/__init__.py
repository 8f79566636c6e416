"""The bottom layer: what every other layer may use, and which imports nothing of latentwm's.

    errors  PipelineError and the one-line error context      ranks, logs  process rank, log lines
    files   atomic writes, sweeping temp files, file_hash       device      pick_device, native_bf16
    image   frames as floats, and psnr / ssim / sharpness on them
"""
