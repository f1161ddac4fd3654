"""The fake provider's media readers: image sizes from their headers, without a server."""

from __future__ import annotations

import struct

from tests.support.fake_provider._media import image_size
from tests.support.payloads import jpeg_header, png


class TestMedia:
    def test_image_sizes_are_read_from_headers(self):
        """PNG, JPEG, GIF and WebP sizes come from their headers; unknown bytes have none."""
        assert image_size(png(31, 17)) == (31, 17)
        assert image_size(jpeg_header(640, 480)) == (640, 480)
        assert image_size(b"GIF89a" + struct.pack("<HH", 20, 10)) == (20, 10)
        webp = b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x00" * 8 + (99).to_bytes(3, "little") + (49).to_bytes(3, "little")
        assert image_size(webp) == (100, 50)
        assert image_size(b"not an image") is None
