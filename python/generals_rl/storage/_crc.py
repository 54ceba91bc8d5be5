"""CRC32C (Castagnoli), hardware accelerated through the ``crc32c`` package, or
``google-crc32c`` when only that one is installed."""

from __future__ import annotations

try:
    from crc32c import crc32c  # crc32c(data, value=0): any buffer, continuing from value

except ImportError:  # pragma: no cover - depends on what is installed
    try:
        import google_crc32c as _google

        def crc32c(data, value: int = 0) -> int:
            """CRC32C of ``data`` (any buffer), continuing from ``value``."""
            return _google.extend(value, bytes(data))

    except ImportError:

        def crc32c(data, value: int = 0) -> int:
            raise ImportError(
                "generals_rl.storage needs a CRC32C implementation: pip install 'generals-rl[storage]' "
                "(or the crc32c package)"
            )


_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data) -> int:
    """The TFRecord masked CRC32C of ``data``."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF
