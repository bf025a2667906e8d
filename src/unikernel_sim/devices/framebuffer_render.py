"""Rendering the Bochs VBE framebuffer to RGB, as the std VGA scans it out: the
visible XRES x YRES window of video memory (lines VIRT_WIDTH wide, panned by
X/Y_OFFSET), pixels in the direct-colour layouts of the VBE mode list (32 bpp
x8r8g8b8, 24 bpp b,g,r bytes, 16 bpp r5g6b5, 15 bpp x1r5g5b5). Paletted modes
(4 and 8 bpp) need the VGA DAC, which is not emulated: ValueError names them."""
from __future__ import annotations

import numpy as np

from unikernel_sim.devices.bochs_vbe import BochsVbe

CHANNEL_BITS = {16: (11, 5, 5, 6, 0, 5), 15: (10, 5, 5, 5, 0, 5)}   # (red pos, size, green..., blue...)


def framebuffer_rgb(vbe: BochsVbe) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) of the visible screen."""
    width, height, bpp = vbe.mode
    if bpp not in (15, 16, 24, 32):
        raise ValueError(f"a {bpp}-bit paletted mode cannot be rendered (the VGA DAC palette is not emulated)")
    data = vbe.visible_bytes()
    lines = len(data) // vbe.line_bytes
    raw = np.frombuffer(data[:lines * vbe.line_bytes], dtype=np.uint8).reshape(lines, vbe.line_bytes)
    bytes_per_pixel = (bpp + 7) // 8
    pixels = raw[:, :width * bytes_per_pixel].reshape(lines, width, bytes_per_pixel)
    if bpp >= 24:
        rgb = pixels[:, :, 2::-1]                        # memory holds blue, green, red (, unused)
    else:
        value = pixels[:, :, 0].astype(np.uint32) | (pixels[:, :, 1].astype(np.uint32) << 8)
        channels = []
        for position, size in zip(CHANNEL_BITS[bpp][::2], CHANNEL_BITS[bpp][1::2]):
            channel = (value >> position) & ((1 << size) - 1)
            channels.append((channel * 255 + ((1 << size) - 1) // 2) // ((1 << size) - 1))
        rgb = np.stack(channels, axis=-1)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:lines] = rgb
    return width, height, image.tobytes()
