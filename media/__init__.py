"""Pure media format code: the media model, ISO-BMFF boxes, codec configurations. No I/O."""
